import { CAMPAIGN_THEMES, FLOW_TEMPLATES, SUBJECT_TEMPLATES } from './catalog';
import { base62, deriveSeed, mix32, Random } from './random';

/**
 * The account's messaging calendar for one generated dataset: its flows (automations, with their
 * messages) and its campaigns (one-off sends spread over the window). Events of email and SMS
 * metrics name these in $flow / $message / Campaign Name / Subject, so those dimensions have the
 * tens-to-hundreds of distinct values a real account has.
 */
export type Channel = 'email' | 'sms';

export interface Message {
  readonly id: string;
  readonly channel: Channel;
  /** What Klaviyo puts in "Campaign Name": the campaign's name, or the flow message's name. */
  readonly name: string;
  readonly subject: string;
  /** The flow's id for a flow message; null for a campaign. */
  readonly flowId: string | null;
}

export interface Campaign extends Message {
  readonly sendMs: number;
}

export interface Flow {
  readonly id: string;
  readonly name: string;
  readonly channel: Channel;
  readonly messages: readonly Message[];
}

export interface World {
  readonly flows: readonly Flow[];
  readonly flowMessages: { readonly email: readonly Message[]; readonly sms: readonly Message[] };
  /** Sorted by send time, per channel. */
  readonly campaigns: { readonly email: readonly Campaign[]; readonly sms: readonly Campaign[] };
}

const FLOW_SUBJECTS = [
  'Welcome to the family',
  'Did you forget something?',
  'Still thinking it over?',
  'Thanks for your order!',
  'We miss you',
  'Happy birthday! A gift inside',
  'Is this goodbye?',
  "It's back in stock",
  'Price drop alert',
  'Time to restock?',
  'How did we do?',
  "You're a VIP now",
  'You might also like',
  'Your order has shipped',
  'You have points to spend',
  'Happy anniversary',
  'Your wishlist misses you',
];

const DAY_MS = 86_400_000;

/** Flows are the same for every dataset (an account keeps its automations); campaigns follow the window. */
export function buildWorld(seed: number, startMs: number, endMs: number): World {
  const fixed = new Random(mix32(0x5eed));
  const flows: Flow[] = FLOW_TEMPLATES.map((template, f) => {
    const id = base62(fixed, 6);
    const messages: Message[] = Array.from({ length: template.messages }, (_, m) => ({
      id: base62(fixed, 6),
      channel: template.channel,
      name: `${template.name} - ${template.channel === 'sms' ? 'SMS' : 'Email'} ${m + 1}`,
      subject: template.channel === 'sms' ? '' : (FLOW_SUBJECTS[(f * 3 + m) % FLOW_SUBJECTS.length] as string),
      flowId: id,
    }));
    return { id, name: template.name, channel: template.channel, messages };
  });

  const random = new Random(deriveSeed(seed, 0xca3a));
  const spanDays = Math.max(1, (endMs - startMs) / DAY_MS);
  // Two email campaigns and half an SMS campaign a week, as many stores send.
  const campaignsOf = (channel: Channel, perWeek: number): Campaign[] => {
    const count = Math.min(400, Math.max(3, Math.round((spanDays / 7) * perWeek)));
    return Array.from({ length: count }, (_, c) => {
      // Sends spread evenly, at a daytime hour (14:00-18:00 UTC, morning to noon in the US).
      const day = Math.floor(((c + 0.5) / count) * spanDays);
      const sendMs = startMs + day * DAY_MS + (14 + random.int(5)) * 3_600_000;
      const theme = random.pick(CAMPAIGN_THEMES);
      const date = new Date(sendMs).toISOString().slice(0, 10);
      const subject = channel === 'sms' ? '' : random.pick(SUBJECT_TEMPLATES).replace('{theme}', theme);
      return {
        id: base62(random, 6),
        channel,
        name: `${theme} - ${date}${channel === 'sms' ? ' (SMS)' : ''}`,
        subject,
        flowId: null,
        sendMs,
      };
    });
  };
  const flowMessages = (channel: Channel) => flows.filter((f) => f.channel === channel).flatMap((f) => f.messages);
  return {
    flows,
    flowMessages: { email: flowMessages('email'), sms: flowMessages('sms') },
    campaigns: { email: campaignsOf('email', 2), sms: campaignsOf('sms', 0.5) },
  };
}
