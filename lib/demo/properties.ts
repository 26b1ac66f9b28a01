import {
  BOUNCE_TYPES,
  BROWSERS,
  CANCEL_REASONS,
  DISCOUNT_CODES,
  EMAIL_CLIENTS,
  FORMS,
  INBOX_PROVIDERS,
  LISTS,
  OPERATING_SYSTEMS,
  ORDER_SOURCES,
  PRODUCTS,
  SHOP_URL,
  SITE_URLS,
  type MetricKind,
  type Product,
} from './catalog';
import { base62, type Random } from './random';
import type { JsonObject } from './types';
import type { Campaign, Channel, Message, World } from './world';

/**
 * event_properties per metric, with the keys Klaviyo's integrations write: `$event_id`, `$value`,
 * attribution (`$attributed_flow`, `$attributed_message`, `$attributed_channel`) on conversions,
 * `$flow` / `$message` / `Campaign Name` / `Subject` on messaging events, `URL`, `Client Name`,
 * `List`, `form_id` and the rest of the dimensions Query Metric Aggregates groups by.
 */
export interface PropertyContext {
  readonly random: Random;
  readonly world: World;
  /** Event time, epoch milliseconds. */
  readonly timeMs: number;
  /** The event's position in the dataset: makes order ids unique. */
  readonly sequence: number;
  readonly emailDomain: string;
}

const CLIENT_TOTAL = EMAIL_CLIENTS.reduce((sum, c) => sum + c.weight, 0);
const SMS_FROM_NUMBER = '+15550100123';
const FLOW_SHARE = { email: 0.4, sms: 0.55 } as const;

/** The index of the last campaign sent at or before `timeMs` (-1 before the first): a binary search. */
function lastSentBefore(list: readonly Campaign[], timeMs: number): number {
  let low = 0;
  let high = list.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((list[mid] as Campaign).sendMs <= timeMs) low = mid + 1;
    else high = mid;
  }
  return low - 1;
}

/** One of the four latest campaigns sent before the event, most often the latest; null before the first. */
function recentCampaign(ctx: PropertyContext, channel: Channel): Campaign | null {
  const list = ctx.world.campaigns[channel];
  const at = lastSentBefore(list, ctx.timeMs);
  if (at < 0) return null;
  const back = ctx.random.chance(0.6) ? 0 : ctx.random.int(4);
  return list[Math.max(0, at - back)] as Campaign;
}

function pickMessage(ctx: PropertyContext, channel: Channel): Message {
  const { random, world } = ctx;
  if (random.chance(FLOW_SHARE[channel])) return random.pick(world.flowMessages[channel]);
  return recentCampaign(ctx, channel) ?? random.pick(world.flowMessages[channel]);
}

function cents(amount: number): number {
  return Math.round(amount * 100);
}

function money(centsValue: number): number {
  return centsValue / 100;
}

function messageProperties(ctx: PropertyContext, message: Message): JsonObject {
  const props: JsonObject = {
    'Campaign Name': message.name,
    $message: message.id,
  };
  if (message.flowId !== null) props.$flow = message.flowId;
  if (message.channel === 'email') {
    props.Subject = message.subject;
    props['Email Domain'] = ctx.emailDomain;
    props['Inbox Provider'] = ctx.random.pick(INBOX_PROVIDERS);
  }
  props.$event_id = `${message.id}:${base62(ctx.random, 10)}`;
  return props;
}

function emailClient(ctx: PropertyContext, props: JsonObject): void {
  let roll = ctx.random.next() * CLIENT_TOTAL;
  for (const client of EMAIL_CLIENTS) {
    roll -= client.weight;
    if (roll < 0 || client === EMAIL_CLIENTS[EMAIL_CLIENTS.length - 1]) {
      props['Client Name'] = client.name;
      props['Client OS'] = client.os;
      props['Client Type'] = client.type;
      props['Client Canonical'] = client.canonical;
      return;
    }
  }
}

/** A third of site and order activity is attributed to a message the profile received. */
function attribute(ctx: PropertyContext, props: JsonObject): void {
  if (!ctx.random.chance(0.3)) return;
  const channel: Channel = ctx.random.chance(0.8) ? 'email' : 'sms';
  const message = pickMessage(ctx, channel);
  if (message.flowId !== null) props.$attributed_flow = message.flowId;
  props.$attributed_message = message.id;
  props.$attributed_channel = channel;
}

function product(random: Random): Product {
  // Best sellers sell more: the first products of the catalogue are picked more often.
  const u = random.next();
  return PRODUCTS[Math.floor(u * u * PRODUCTS.length)] as Product;
}

interface Basket {
  readonly items: JsonObject[];
  readonly names: string[];
  readonly categories: string[];
  readonly brands: string[];
  readonly totalCents: number;
}

function basket(random: Random): Basket {
  const size = 1 + Math.min(5, Math.floor(-Math.log(1 - random.next()) * 0.9));
  const items: JsonObject[] = [];
  const names: string[] = [];
  const categories = new Set<string>();
  const brands = new Set<string>();
  let totalCents = 0;
  for (let i = 0; i < size; i += 1) {
    const p = product(random);
    const quantity = random.chance(0.85) ? 1 : 2 + random.int(2);
    const rowCents = cents(p.price) * quantity;
    totalCents += rowCents;
    names.push(p.name);
    for (const c of p.categories) categories.add(c);
    brands.add(p.brand);
    items.push({
      ProductID: p.id,
      SKU: p.sku,
      ProductName: p.name,
      Quantity: quantity,
      ItemPrice: p.price,
      RowTotal: money(rowCents),
      ProductURL: p.url,
      ImageURL: p.imageUrl,
      Categories: [...p.categories],
      Brand: p.brand,
    });
  }
  return { items, names, categories: [...categories], brands: [...brands], totalCents };
}

function orderId(sequence: number): string {
  return String(5_600_000_000_000 + sequence * 37);
}

function orderProperties(ctx: PropertyContext, withDiscount: boolean): JsonObject {
  const { random } = ctx;
  const cart = basket(random);
  const discountCode = withDiscount && random.chance(0.25) ? random.pick(DISCOUNT_CODES) : null;
  const discountCents = discountCode === null ? 0 : Math.round(cart.totalCents * (0.1 + random.int(3) * 0.05));
  const id = orderId(ctx.sequence);
  return {
    $event_id: id,
    $value: money(cart.totalCents - discountCents),
    $value_currency: 'USD',
    OrderId: id,
    Categories: cart.categories,
    ItemNames: cart.names,
    Brands: cart.brands,
    DiscountCode: discountCode,
    DiscountValue: money(discountCents),
    Items: cart.items,
    'Item Count': cart.items.length,
    'Source Name': random.pick(ORDER_SOURCES),
  };
}

export function eventProperties(kind: MetricKind, ctx: PropertyContext): JsonObject {
  const { random } = ctx;
  switch (kind) {
    case 'received-email':
      return messageProperties(ctx, pickMessage(ctx, 'email'));
    case 'opened-email': {
      const props = messageProperties(ctx, pickMessage(ctx, 'email'));
      emailClient(ctx, props);
      return props;
    }
    case 'clicked-email': {
      const props = messageProperties(ctx, pickMessage(ctx, 'email'));
      emailClient(ctx, props);
      props.URL = random.pick(SITE_URLS);
      props['Bot Click'] = random.chance(0.03);
      return props;
    }
    case 'bounced-email': {
      const props = messageProperties(ctx, pickMessage(ctx, 'email'));
      props['Bounce Type'] = random.pick(BOUNCE_TYPES);
      return props;
    }
    case 'dropped-email': {
      const props = messageProperties(ctx, pickMessage(ctx, 'email'));
      props['Failure Type'] = random.pick(['Previously Bounced', 'Previously Unsubscribed', 'Marked as Spam']);
      return props;
    }
    case 'spam-email':
      return messageProperties(ctx, pickMessage(ctx, 'email'));
    case 'unsubscribed': {
      const props = messageProperties(ctx, pickMessage(ctx, 'email'));
      props.Method = random.chance(0.9) ? 'Unsubscribe Link' : 'Preference Page';
      props.List = LISTS[0].name;
      return props;
    }
    case 'unsubscribed-sms':
      return { Method: 'STOP keyword', 'From Number': SMS_FROM_NUMBER, List: LISTS[1].name };
    case 'subscribed': {
      const list = random.pick(LISTS);
      const viaForm = random.chance(0.7);
      const props: JsonObject = {
        List: list.name,
        Method: viaForm ? 'Form' : random.pick(['API', 'Checkout', 'Import']),
      };
      if (viaForm) props.form_id = random.pick(FORMS).id;
      return props;
    }
    case 'received-sms':
    case 'clicked-sms': {
      const message = pickMessage(ctx, 'sms');
      const props: JsonObject = {
        'Campaign Name': message.name,
        $message: message.id,
      };
      if (message.flowId !== null) props.$flow = message.flowId;
      props['Message Format'] = random.chance(0.8) ? 'SMS' : 'MMS';
      props['Message Type'] = message.flowId === null ? 'promotional' : random.pick(['promotional', 'transactional']);
      props['From Number'] = SMS_FROM_NUMBER;
      props['From Phone Region'] = 'US';
      props['To Phone Region'] = 'US';
      if (kind === 'received-sms') props['Segment Count'] = 1 + (random.chance(0.3) ? 1 : 0);
      else props.URL = random.pick(SITE_URLS);
      props.$event_id = `${message.id}:${base62(random, 10)}`;
      return props;
    }
    case 'active-on-site': {
      const props: JsonObject = {
        $is_session_activity: true,
        $use_ip: true,
        page: random.pick(SITE_URLS),
        browser: random.pick(BROWSERS),
        os: random.pick(OPERATING_SYSTEMS),
      };
      attribute(ctx, props);
      return props;
    }
    case 'viewed-page': {
      const props: JsonObject = {
        URL: random.pick(SITE_URLS),
        'Page Title': 'Northwind Outfitters',
        Referrer: random.pick(['https://www.google.com/', 'https://www.instagram.com/', '', '', `${SHOP_URL}/`]),
      };
      attribute(ctx, props);
      return props;
    }
    case 'viewed-product': {
      const p = product(random);
      const props: JsonObject = {
        ProductName: p.name,
        ProductID: p.id,
        SKU: p.sku,
        Categories: [...p.categories],
        ImageURL: p.imageUrl,
        URL: p.url,
        Brand: p.brand,
        Price: p.price,
      };
      attribute(ctx, props);
      return props;
    }
    case 'added-to-cart': {
      const p = product(random);
      const quantity = random.chance(0.9) ? 1 : 2;
      const props: JsonObject = {
        $value: money(cents(p.price) * quantity),
        AddedItemProductName: p.name,
        AddedItemProductID: p.id,
        AddedItemSKU: p.sku,
        AddedItemCategories: [...p.categories],
        AddedItemImageURL: p.imageUrl,
        AddedItemURL: p.url,
        AddedItemPrice: p.price,
        AddedItemQuantity: quantity,
        CheckoutURL: `${SHOP_URL}/cart`,
      };
      attribute(ctx, props);
      return props;
    }
    case 'started-checkout': {
      const cart = basket(random);
      const props: JsonObject = {
        $event_id: `${base62(random, 12)}_${Math.floor(ctx.timeMs / 1000)}`,
        $value: money(cart.totalCents),
        ItemNames: cart.names,
        Categories: cart.categories,
        Items: cart.items,
        CheckoutURL: `${SHOP_URL}/checkouts/${base62(random, 16)}`,
      };
      attribute(ctx, props);
      return props;
    }
    case 'placed-order': {
      const props = orderProperties(ctx, true);
      attribute(ctx, props);
      return props;
    }
    case 'ordered-product': {
      const p = product(random);
      const quantity = random.chance(0.85) ? 1 : 2;
      const id = orderId(ctx.sequence);
      const props: JsonObject = {
        $event_id: `${id}_${p.sku}`,
        $value: money(cents(p.price) * quantity),
        OrderId: id,
        ProductID: p.id,
        SKU: p.sku,
        ProductName: p.name,
        Quantity: quantity,
        ProductURL: p.url,
        ImageURL: p.imageUrl,
        Categories: [...p.categories],
        ProductBrand: p.brand,
      };
      attribute(ctx, props);
      return props;
    }
    case 'fulfilled-order': {
      const props = orderProperties(ctx, true);
      props['Fulfillment Status'] = 'fulfilled';
      props['Tracking Company'] = random.pick(['UPS', 'USPS', 'FedEx', 'DHL']);
      return props;
    }
    case 'cancelled-order': {
      const props = orderProperties(ctx, true);
      props.Reason = random.pick(CANCEL_REASONS);
      return props;
    }
    case 'refunded-order': {
      const props = orderProperties(ctx, false);
      props['Refund Reason'] = random.pick(['Damaged', 'Wrong size', 'Changed mind', 'Late delivery']);
      return props;
    }
    case 'submitted-form': {
      const form = random.pick(FORMS);
      return { form_id: form.id, 'Form Name': form.name, 'Form Type': form.type, URL: random.pick(SITE_URLS) };
    }
  }
}
