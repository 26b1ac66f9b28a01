/**
 * The fixed vocabulary of the demo account: Klaviyo's metrics with their integrations, and the names,
 * places, products, flows and campaigns that events and profiles are drawn from. Everything here is
 * fake but well-formed: emails use the reserved example.* domains, phone numbers the fictional 555
 * area code, IP addresses the documentation ranges (RFC 5737).
 */

export interface Integration {
  readonly object: 'integration';
  readonly id: string;
  readonly key: string;
  readonly name: string;
  readonly category: string;
}

export const INTEGRATIONS = {
  shopify: { object: 'integration', id: '0eMvjm', key: 'shopify', name: 'Shopify', category: 'eCommerce' },
  klaviyo: { object: 'integration', id: '0rG4eQ', key: 'klaviyo', name: 'Klaviyo', category: 'Internal' },
  api: { object: 'integration', id: '7FtS4J', key: 'api', name: 'API', category: 'API' },
} as const satisfies Record<string, Integration>;

/** What an event of a metric carries in event_properties; the generator builds each kind. */
export type MetricKind =
  | 'received-email'
  | 'opened-email'
  | 'clicked-email'
  | 'bounced-email'
  | 'dropped-email'
  | 'spam-email'
  | 'unsubscribed'
  | 'unsubscribed-sms'
  | 'subscribed'
  | 'received-sms'
  | 'clicked-sms'
  | 'active-on-site'
  | 'viewed-page'
  | 'viewed-product'
  | 'added-to-cart'
  | 'started-checkout'
  | 'placed-order'
  | 'ordered-product'
  | 'fulfilled-order'
  | 'cancelled-order'
  | 'refunded-order'
  | 'submitted-form';

export interface DemoMetric {
  /** Klaviyo-style 6-character id, the same for every seed so that benches and tests can name it. */
  readonly id: string;
  readonly name: string;
  readonly kind: MetricKind;
  readonly integration: Integration;
  /** Relative frequency: events of this metric per thousand events of the account, roughly. */
  readonly weight: number;
  readonly created: string;
}

/**
 * Weights follow a typical Shopify store that emails its list several times a week: most events are
 * email deliveries, a fraction of them are opened, a few percent of opens are clicked, and orders are
 * rarer still.
 */
export const DEMO_METRICS: readonly DemoMetric[] = [
  {
    id: 'Uu7kBJ',
    name: 'Received Email',
    kind: 'received-email',
    integration: INTEGRATIONS.klaviyo,
    weight: 380,
    created: '2021-03-02T17:04:11+00:00',
  },
  {
    id: 'VqXnqA',
    name: 'Opened Email',
    kind: 'opened-email',
    integration: INTEGRATIONS.klaviyo,
    weight: 140,
    created: '2021-03-02T17:04:12+00:00',
  },
  {
    id: 'Ts9qGk',
    name: 'Active on Site',
    kind: 'active-on-site',
    integration: INTEGRATIONS.klaviyo,
    weight: 110,
    created: '2021-03-05T09:12:40+00:00',
  },
  {
    id: 'S8eYw3',
    name: 'Viewed Product',
    kind: 'viewed-product',
    integration: INTEGRATIONS.shopify,
    weight: 90,
    created: '2021-03-05T09:12:41+00:00',
  },
  {
    id: 'R5mPzL',
    name: 'Viewed Page',
    kind: 'viewed-page',
    integration: INTEGRATIONS.api,
    weight: 60,
    created: '2021-06-18T13:30:02+00:00',
  },
  {
    id: 'QpT2vD',
    name: 'Received SMS',
    kind: 'received-sms',
    integration: INTEGRATIONS.klaviyo,
    weight: 40,
    created: '2021-09-21T10:01:55+00:00',
  },
  {
    id: 'Pn6Wc1',
    name: 'Clicked Email',
    kind: 'clicked-email',
    integration: INTEGRATIONS.klaviyo,
    weight: 25,
    created: '2021-03-02T17:04:12+00:00',
  },
  {
    id: 'N3xKjH',
    name: 'Added to Cart',
    kind: 'added-to-cart',
    integration: INTEGRATIONS.shopify,
    weight: 20,
    created: '2021-03-05T09:12:43+00:00',
  },
  {
    id: 'M7bGq9',
    name: 'Ordered Product',
    kind: 'ordered-product',
    integration: INTEGRATIONS.shopify,
    weight: 14,
    created: '2021-03-02T16:58:20+00:00',
  },
  {
    id: 'L2sVtR',
    name: 'Started Checkout',
    kind: 'started-checkout',
    integration: INTEGRATIONS.shopify,
    weight: 12,
    created: '2021-03-02T16:58:21+00:00',
  },
  {
    id: 'K9dFhW',
    name: 'Placed Order',
    kind: 'placed-order',
    integration: INTEGRATIONS.shopify,
    weight: 8,
    created: '2021-03-02T16:58:19+00:00',
  },
  {
    id: 'J4gZnB',
    name: 'Fulfilled Order',
    kind: 'fulfilled-order',
    integration: INTEGRATIONS.shopify,
    weight: 7,
    created: '2021-03-02T16:58:22+00:00',
  },
  {
    id: 'H6kCmX',
    name: 'Clicked SMS',
    kind: 'clicked-sms',
    integration: INTEGRATIONS.klaviyo,
    weight: 6,
    created: '2021-09-21T10:01:56+00:00',
  },
  {
    id: 'G1pRsY',
    name: 'Bounced Email',
    kind: 'bounced-email',
    integration: INTEGRATIONS.klaviyo,
    weight: 4,
    created: '2021-03-02T17:04:13+00:00',
  },
  {
    id: 'F8tUvE',
    name: 'Subscribed to List',
    kind: 'subscribed',
    integration: INTEGRATIONS.klaviyo,
    weight: 3,
    created: '2021-03-02T17:04:10+00:00',
  },
  {
    id: 'E5wJyA',
    name: 'Submitted Form',
    kind: 'submitted-form',
    integration: INTEGRATIONS.klaviyo,
    weight: 3,
    created: '2021-04-11T08:45:00+00:00',
  },
  {
    id: 'D2zLbQ',
    name: 'Unsubscribed',
    kind: 'unsubscribed',
    integration: INTEGRATIONS.klaviyo,
    weight: 1.5,
    created: '2021-03-02T17:04:14+00:00',
  },
  {
    id: 'Y6hBtU',
    name: 'Dropped Email',
    kind: 'dropped-email',
    integration: INTEGRATIONS.klaviyo,
    weight: 1,
    created: '2021-03-02T17:04:15+00:00',
  },
  {
    id: 'C7nHxT',
    name: 'Refunded Order',
    kind: 'refunded-order',
    integration: INTEGRATIONS.shopify,
    weight: 0.6,
    created: '2021-03-02T16:58:23+00:00',
  },
  {
    id: 'Z4cNrS',
    name: 'Unsubscribed from SMS',
    kind: 'unsubscribed-sms',
    integration: INTEGRATIONS.klaviyo,
    weight: 0.5,
    created: '2021-09-21T10:01:57+00:00',
  },
  {
    id: 'B3qMdK',
    name: 'Cancelled Order',
    kind: 'cancelled-order',
    integration: INTEGRATIONS.shopify,
    weight: 0.4,
    created: '2021-03-02T16:58:24+00:00',
  },
  {
    id: 'A9vPfG',
    name: 'Marked Email as Spam',
    kind: 'spam-email',
    integration: INTEGRATIONS.klaviyo,
    weight: 0.2,
    created: '2021-03-02T17:04:16+00:00',
  },
];

export function demoMetricByName(name: string): DemoMetric {
  const metric = DEMO_METRICS.find((m) => m.name === name);
  if (!metric) throw new RangeError(`No demo metric is named "${name}"`);
  return metric;
}

export const FIRST_NAMES = [
  'Sarah',
  'James',
  'Maria',
  'David',
  'Emma',
  'Michael',
  'Olivia',
  'Daniel',
  'Sophia',
  'Matthew',
  'Ava',
  'Joseph',
  'Isabella',
  'Andrew',
  'Mia',
  'Joshua',
  'Charlotte',
  'Christopher',
  'Amelia',
  'Ryan',
  'Harper',
  'Nathan',
  'Evelyn',
  'Samuel',
  'Abigail',
  'Benjamin',
  'Emily',
  'Lucas',
  'Elizabeth',
  'Henry',
  'Sofia',
  'Owen',
  'Avery',
  'Jack',
  'Ella',
  'Leo',
  'Scarlett',
  'Gabriel',
  'Grace',
  'Julian',
  'Chloe',
  'Wyatt',
  'Victoria',
  'Isaac',
  'Riley',
  'Aaron',
  'Aria',
  'Thomas',
  'Lily',
  'Carlos',
  'Zoey',
  'Hiro',
  'Priya',
  'Wei',
  'Fatima',
  'Mateo',
  'Lucia',
  'Noah',
  'Hannah',
  'Elena',
];

export const LAST_NAMES = [
  'Mason',
  'Smith',
  'Johnson',
  'Williams',
  'Brown',
  'Jones',
  'Garcia',
  'Miller',
  'Davis',
  'Rodriguez',
  'Martinez',
  'Hernandez',
  'Lopez',
  'Gonzalez',
  'Wilson',
  'Anderson',
  'Thomas',
  'Taylor',
  'Moore',
  'Jackson',
  'Martin',
  'Lee',
  'Perez',
  'Thompson',
  'White',
  'Harris',
  'Sanchez',
  'Clark',
  'Ramirez',
  'Lewis',
  'Robinson',
  'Walker',
  'Young',
  'Allen',
  'King',
  'Wright',
  'Scott',
  'Torres',
  'Nguyen',
  'Hill',
  'Flores',
  'Green',
  'Adams',
  'Nelson',
  'Baker',
  'Hall',
  'Rivera',
  'Campbell',
  'Mitchell',
  'Carter',
  'Roberts',
  'Patel',
  'Kim',
  'Chen',
  'Okafor',
  'Schmidt',
  'Rossi',
  'Dubois',
  'Silva',
  "O'Brien",
];

export const EMAIL_DOMAINS = ['example.com', 'example.org', 'example.net'] as const;

export const ORGANIZATIONS = [
  'Example Corporation',
  'Acme Outdoor Co.',
  'Globex Retail',
  'Initech',
  'Umbrella Analytics',
  'Stark Design Studio',
  'Wayne Logistics',
  'Hooli',
  'Vandelay Industries',
  'Pied Piper',
  'Soylent Foods',
  'Wonka Confectionery',
];

export const TITLES = [
  'Regional Manager',
  'Software Engineer',
  'Teacher',
  'Nurse',
  'Designer',
  'Marketing Director',
  'Accountant',
  'Student',
  'Product Manager',
  'Chef',
  'Consultant',
  'Sales Associate',
];

export interface Place {
  readonly city: string;
  readonly region: string;
  readonly country: string;
  readonly zip: string;
  readonly latitude: string;
  readonly longitude: string;
  readonly timezone: string;
  readonly locale: string;
  /** How many of the account's customers live there, relatively. */
  readonly weight: number;
}

export const PLACES: readonly Place[] = [
  {
    city: 'New York',
    region: 'NY',
    country: 'United States',
    zip: '10017',
    latitude: '40.7128',
    longitude: '-74.0060',
    timezone: 'America/New_York',
    locale: 'en-US',
    weight: 12,
  },
  {
    city: 'Brooklyn',
    region: 'NY',
    country: 'United States',
    zip: '11201',
    latitude: '40.6782',
    longitude: '-73.9442',
    timezone: 'America/New_York',
    locale: 'en-US',
    weight: 6,
  },
  {
    city: 'Boston',
    region: 'MA',
    country: 'United States',
    zip: '02108',
    latitude: '42.3601',
    longitude: '-71.0589',
    timezone: 'America/New_York',
    locale: 'en-US',
    weight: 6,
  },
  {
    city: 'Philadelphia',
    region: 'PA',
    country: 'United States',
    zip: '19103',
    latitude: '39.9526',
    longitude: '-75.1652',
    timezone: 'America/New_York',
    locale: 'en-US',
    weight: 5,
  },
  {
    city: 'Washington',
    region: 'DC',
    country: 'United States',
    zip: '20001',
    latitude: '38.9072',
    longitude: '-77.0369',
    timezone: 'America/New_York',
    locale: 'en-US',
    weight: 4,
  },
  {
    city: 'Atlanta',
    region: 'GA',
    country: 'United States',
    zip: '30303',
    latitude: '33.7490',
    longitude: '-84.3880',
    timezone: 'America/New_York',
    locale: 'en-US',
    weight: 5,
  },
  {
    city: 'Miami',
    region: 'FL',
    country: 'United States',
    zip: '33130',
    latitude: '25.7617',
    longitude: '-80.1918',
    timezone: 'America/New_York',
    locale: 'en-US',
    weight: 5,
  },
  {
    city: 'Chicago',
    region: 'IL',
    country: 'United States',
    zip: '60601',
    latitude: '41.8781',
    longitude: '-87.6298',
    timezone: 'America/Chicago',
    locale: 'en-US',
    weight: 8,
  },
  {
    city: 'Austin',
    region: 'TX',
    country: 'United States',
    zip: '78701',
    latitude: '30.2672',
    longitude: '-97.7431',
    timezone: 'America/Chicago',
    locale: 'en-US',
    weight: 5,
  },
  {
    city: 'Houston',
    region: 'TX',
    country: 'United States',
    zip: '77002',
    latitude: '29.7604',
    longitude: '-95.3698',
    timezone: 'America/Chicago',
    locale: 'en-US',
    weight: 5,
  },
  {
    city: 'Minneapolis',
    region: 'MN',
    country: 'United States',
    zip: '55401',
    latitude: '44.9778',
    longitude: '-93.2650',
    timezone: 'America/Chicago',
    locale: 'en-US',
    weight: 3,
  },
  {
    city: 'Denver',
    region: 'CO',
    country: 'United States',
    zip: '80202',
    latitude: '39.7392',
    longitude: '-104.9903',
    timezone: 'America/Denver',
    locale: 'en-US',
    weight: 4,
  },
  {
    city: 'Phoenix',
    region: 'AZ',
    country: 'United States',
    zip: '85003',
    latitude: '33.4484',
    longitude: '-112.0740',
    timezone: 'America/Phoenix',
    locale: 'en-US',
    weight: 3,
  },
  {
    city: 'Los Angeles',
    region: 'CA',
    country: 'United States',
    zip: '90012',
    latitude: '34.0522',
    longitude: '-118.2437',
    timezone: 'America/Los_Angeles',
    locale: 'en-US',
    weight: 10,
  },
  {
    city: 'San Francisco',
    region: 'CA',
    country: 'United States',
    zip: '94103',
    latitude: '37.7749',
    longitude: '-122.4194',
    timezone: 'America/Los_Angeles',
    locale: 'en-US',
    weight: 6,
  },
  {
    city: 'Seattle',
    region: 'WA',
    country: 'United States',
    zip: '98101',
    latitude: '47.6062',
    longitude: '-122.3321',
    timezone: 'America/Los_Angeles',
    locale: 'en-US',
    weight: 5,
  },
  {
    city: 'Portland',
    region: 'OR',
    country: 'United States',
    zip: '97204',
    latitude: '45.5152',
    longitude: '-122.6784',
    timezone: 'America/Los_Angeles',
    locale: 'en-US',
    weight: 3,
  },
  {
    city: 'Toronto',
    region: 'ON',
    country: 'Canada',
    zip: 'M5H 2N2',
    latitude: '43.6532',
    longitude: '-79.3832',
    timezone: 'America/Toronto',
    locale: 'en-CA',
    weight: 4,
  },
  {
    city: 'Montreal',
    region: 'QC',
    country: 'Canada',
    zip: 'H2Y 1C6',
    latitude: '45.5019',
    longitude: '-73.5674',
    timezone: 'America/Toronto',
    locale: 'fr-CA',
    weight: 2,
  },
  {
    city: 'Vancouver',
    region: 'BC',
    country: 'Canada',
    zip: 'V6B 1A1',
    latitude: '49.2827',
    longitude: '-123.1207',
    timezone: 'America/Vancouver',
    locale: 'en-CA',
    weight: 2,
  },
  {
    city: 'London',
    region: 'England',
    country: 'United Kingdom',
    zip: 'EC1A 1BB',
    latitude: '51.5074',
    longitude: '-0.1278',
    timezone: 'Europe/London',
    locale: 'en-GB',
    weight: 4,
  },
  {
    city: 'Manchester',
    region: 'England',
    country: 'United Kingdom',
    zip: 'M1 1AE',
    latitude: '53.4808',
    longitude: '-2.2426',
    timezone: 'Europe/London',
    locale: 'en-GB',
    weight: 1,
  },
  {
    city: 'Dublin',
    region: 'Leinster',
    country: 'Ireland',
    zip: 'D02 X285',
    latitude: '53.3498',
    longitude: '-6.2603',
    timezone: 'Europe/Dublin',
    locale: 'en-IE',
    weight: 1,
  },
  {
    city: 'Berlin',
    region: 'Berlin',
    country: 'Germany',
    zip: '10117',
    latitude: '52.5200',
    longitude: '13.4050',
    timezone: 'Europe/Berlin',
    locale: 'de-DE',
    weight: 1,
  },
  {
    city: 'Sydney',
    region: 'NSW',
    country: 'Australia',
    zip: '2000',
    latitude: '-33.8688',
    longitude: '151.2093',
    timezone: 'Australia/Sydney',
    locale: 'en-AU',
    weight: 2,
  },
];

export const STREETS = [
  'Main St',
  'Oak Ave',
  'Maple Dr',
  'Cedar Ln',
  'Park Ave',
  'Elm St',
  'Washington Blvd',
  'Lake Rd',
  'Hillcrest Dr',
  'Sunset Blvd',
  'River Rd',
  'Broadway',
  'E 42nd St',
  'Market St',
  'Pine St',
];

export const SOURCES = ['Shopify', 'Signup Form', 'API', 'Checkout', 'Import'] as const;
export const CUSTOMER_TIERS = ['Bronze', 'Silver', 'Gold', 'Platinum'] as const;

export const BRANDS = [
  'Northwind',
  'Alpine Co.',
  'Harbor & Pine',
  'Lumen',
  'Cascade',
  'Fernwood',
  'Solstice',
  'Tidewater',
];
const ADJECTIVES = [
  'Classic',
  'Merino',
  'Organic',
  'Everyday',
  'Lightweight',
  'Waterproof',
  'Vintage',
  'Recycled',
  'Premium',
  'Cozy',
  'Trail',
  'Linen',
  'Canvas',
  'Ceramic',
  'Bamboo',
];
const PRODUCT_TYPES: readonly { noun: string; category: string; price: number }[] = [
  { noun: 'Beanie', category: 'Accessories', price: 28 },
  { noun: 'Crewneck Sweater', category: 'Apparel', price: 89 },
  { noun: 'Rain Jacket', category: 'Outerwear', price: 168 },
  { noun: 'Tote Bag', category: 'Bags', price: 42 },
  { noun: 'Water Bottle', category: 'Home', price: 32 },
  { noun: 'Coffee Mug', category: 'Home', price: 24 },
  { noun: 'Hiking Socks', category: 'Accessories', price: 18 },
  { noun: 'T-Shirt', category: 'Apparel', price: 34 },
  { noun: 'Throw Blanket', category: 'Home', price: 120 },
  { noun: 'Backpack', category: 'Bags', price: 139 },
  { noun: 'Sneakers', category: 'Footwear', price: 115 },
  { noun: 'Sunglasses', category: 'Accessories', price: 65 },
  { noun: 'Candle', category: 'Home', price: 29 },
  { noun: 'Joggers', category: 'Apparel', price: 72 },
];

export interface Product {
  readonly id: number;
  readonly sku: string;
  readonly name: string;
  readonly brand: string;
  readonly categories: readonly string[];
  readonly price: number;
  readonly url: string;
  readonly imageUrl: string;
}

function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/&/g, 'and')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '');
}

export const SHOP_URL = 'https://shop.example.com';

/** 210 products (15 adjectives x 14 types), a realistic catalogue for a mid-sized store. */
export const PRODUCTS: readonly Product[] = ADJECTIVES.flatMap((adjective, a) =>
  PRODUCT_TYPES.map((type, t) => {
    const index = a * PRODUCT_TYPES.length + t;
    const brand = BRANDS[index % BRANDS.length] as string;
    const name = `${adjective} ${type.noun}`;
    // Price points end in .00 or .99 around the type's base price.
    const price = Math.round(type.price * (0.8 + ((a * 7 + t * 3) % 9) / 20)) - (index % 3 === 0 ? 0.01 : 0);
    return {
      id: 7_400_000_000 + index * 1_117,
      sku: `${type.category.slice(0, 3).toUpperCase()}-${String(1000 + index)}`,
      name,
      brand,
      categories: [type.category, a % 4 === 0 ? 'New Arrivals' : 'All Products'],
      price,
      url: `${SHOP_URL}/products/${slug(name)}`,
      imageUrl: `https://cdn.example.com/images/${slug(name)}.jpg`,
    };
  }),
);

const COLLECTIONS = [
  'new-arrivals',
  'best-sellers',
  'sale',
  'outerwear',
  'accessories',
  'home',
  'footwear',
  'bags',
  'gift-guide',
  'under-50',
  'summer',
  'winter',
  'mens',
  'womens',
  'kids',
  'eco',
  'bundles',
  'last-chance',
  'limited-edition',
  'travel',
  'office',
  'fitness',
  'camping',
  'kitchen',
  'bedroom',
  'holiday',
  'back-to-school',
  'essentials',
];
const PAGES = [
  '',
  'about',
  'contact',
  'faq',
  'shipping',
  'returns',
  'stores',
  'rewards',
  'gift-cards',
  'size-guide',
  'sustainability',
  'careers',
  'press',
  'wholesale',
  'account',
  'account/orders',
  'cart',
  'search',
];
const BLOG_TOPICS = [
  'how-to-layer-for-winter',
  'packing-list-weekend-trip',
  'caring-for-merino',
  'our-recycled-materials',
  'best-hikes-near-the-city',
  'gift-ideas-under-50',
  'behind-the-design',
  'meet-the-makers',
  'cozy-home-tips',
  'summer-trail-guide',
  'coffee-brewing-basics',
  'minimalist-wardrobe',
  'rainy-day-essentials',
  'travel-light',
];

/** About 300 distinct URLs: product pages, collections, content pages and blog posts. */
export const SITE_URLS: readonly string[] = [
  ...PRODUCTS.map((p) => p.url),
  ...COLLECTIONS.map((c) => `${SHOP_URL}/collections/${c}`),
  ...PAGES.map((p) => (p === '' ? `${SHOP_URL}/` : `${SHOP_URL}/pages/${p}`)),
  ...BLOG_TOPICS.flatMap((topic, i) => [
    `${SHOP_URL}/blogs/journal/${topic}`,
    ...(i % 2 === 0 ? [`${SHOP_URL}/blogs/journal/${topic}-part-2`] : []),
  ]),
  ...COLLECTIONS.slice(0, 20).map((c) => `${SHOP_URL}/collections/${c}?sort_by=price-ascending`),
];

export const FLOW_TEMPLATES: readonly { name: string; channel: 'email' | 'sms'; messages: number }[] = [
  { name: 'Welcome Series', channel: 'email', messages: 4 },
  { name: 'Abandoned Cart', channel: 'email', messages: 3 },
  { name: 'Browse Abandonment', channel: 'email', messages: 2 },
  { name: 'Checkout Abandonment', channel: 'email', messages: 3 },
  { name: 'Post-Purchase Thank You', channel: 'email', messages: 2 },
  { name: 'Customer Winback', channel: 'email', messages: 3 },
  { name: 'Birthday', channel: 'email', messages: 1 },
  { name: 'Sunset Unengaged', channel: 'email', messages: 2 },
  { name: 'Back in Stock', channel: 'email', messages: 1 },
  { name: 'Price Drop', channel: 'email', messages: 1 },
  { name: 'Replenishment Reminder', channel: 'email', messages: 2 },
  { name: 'Review Request', channel: 'email', messages: 2 },
  { name: 'VIP Upgrade', channel: 'email', messages: 1 },
  { name: 'Cross-Sell', channel: 'email', messages: 2 },
  { name: 'Site Abandonment', channel: 'email', messages: 1 },
  { name: 'Shipping Confirmation', channel: 'email', messages: 1 },
  { name: 'Loyalty Points Reminder', channel: 'email', messages: 2 },
  { name: 'Anniversary', channel: 'email', messages: 1 },
  { name: 'First Purchase Follow-Up', channel: 'email', messages: 3 },
  { name: 'Lapsed Customer', channel: 'email', messages: 2 },
  { name: 'Newsletter Welcome', channel: 'email', messages: 2 },
  { name: 'Wishlist Reminder', channel: 'email', messages: 1 },
  { name: 'Welcome SMS', channel: 'sms', messages: 2 },
  { name: 'Abandoned Cart SMS', channel: 'sms', messages: 2 },
  { name: 'Shipping Update SMS', channel: 'sms', messages: 1 },
  { name: 'Back in Stock SMS', channel: 'sms', messages: 1 },
  { name: 'Winback SMS', channel: 'sms', messages: 1 },
  { name: 'Flash Sale SMS Follow-Up', channel: 'sms', messages: 1 },
];

export const CAMPAIGN_THEMES = [
  'New Arrivals',
  'Weekend Flash Sale',
  'Spring Collection',
  'Summer Sale',
  'Back to School',
  'Fall Favorites',
  'Black Friday Early Access',
  'Black Friday',
  'Cyber Monday',
  'Holiday Gift Guide',
  'Last Shipping Day',
  'Winter Clearance',
  'Best Sellers Restocked',
  'Members Only',
  'Free Shipping Weekend',
  'Product Spotlight',
  'Behind the Design',
  'Sustainability Report',
  'Customer Favorites',
  'Limited Edition Drop',
];

export const SUBJECT_TEMPLATES = [
  'Just in: {theme} 🎉',
  "{{ first_name|default:'Hey' }}, your {theme} picks are here",
  'Ends tonight: {theme}',
  "Don't miss {theme}",
  '{theme} — up to 40% off',
  "A little something for you, {{ first_name|default:'friend' }}",
  'Back by popular demand: {theme}',
  'Your exclusive code inside',
  'Last chance: {theme}',
];

export const LISTS = [
  { id: 'XbR7tP', name: 'Newsletter' },
  { id: 'WcQ2mK', name: 'SMS Subscribers' },
  { id: 'VdP9nJ', name: 'VIP Customers' },
  { id: 'UeN4bH', name: 'Early Access' },
  { id: 'TfM8cG', name: 'Back in Stock Waitlist' },
  { id: 'SgL3dF', name: 'Wholesale Inquiries' },
  { id: 'RhK6eD', name: 'Blog Readers' },
  { id: 'QjJ1fC', name: 'Holiday Shoppers' },
  { id: 'PkH5gB', name: 'Rewards Members' },
  { id: 'NmG0hA', name: 'Preview List' },
  { id: 'MnF2jZ', name: 'Canada Customers' },
  { id: 'LpE7kY', name: 'UK Customers' },
] as const;

export const FORMS = [
  { id: 'Xq8K2p', name: 'Welcome Popup 10% Off', type: 'popup' },
  { id: 'Wr3L7n', name: 'Footer Signup', type: 'embed' },
  { id: 'Vs6M1m', name: 'Exit Intent', type: 'popup' },
  { id: 'Ut9N4k', name: 'SMS Opt-In Flyout', type: 'flyout' },
  { id: 'Tu2P8j', name: 'Back in Stock', type: 'embed' },
  { id: 'Sv5Q3h', name: 'Spin to Win', type: 'popup' },
  { id: 'Rw7R6g', name: 'Blog Subscribe', type: 'embed' },
  { id: 'Qx1S9f', name: 'Holiday Early Access', type: 'popup' },
  { id: 'Py4T2d', name: 'Quiz Results', type: 'full-page' },
  { id: 'Nz8U5c', name: 'Wholesale Contact', type: 'embed' },
] as const;

export const EMAIL_CLIENTS: readonly { name: string; os: string; type: string; canonical: string; weight: number }[] = [
  { name: 'Apple Mail', os: 'iOS', type: 'Mobile', canonical: 'Apple Mail', weight: 45 },
  { name: 'Gmail', os: 'Android', type: 'Mobile', canonical: 'Gmail', weight: 20 },
  { name: 'Gmail', os: 'Web', type: 'Webmail', canonical: 'Gmail', weight: 15 },
  { name: 'Outlook', os: 'Windows', type: 'Desktop', canonical: 'Outlook', weight: 8 },
  { name: 'Yahoo! Mail', os: 'Web', type: 'Webmail', canonical: 'Yahoo! Mail', weight: 5 },
  { name: 'Apple Mail', os: 'macOS', type: 'Desktop', canonical: 'Apple Mail', weight: 5 },
  { name: 'Samsung Email', os: 'Android', type: 'Mobile', canonical: 'Samsung Email', weight: 2 },
];

export const INBOX_PROVIDERS = ['Gmail', 'Apple', 'Microsoft', 'Yahoo', 'Other'] as const;
export const BROWSERS = ['Chrome', 'Safari', 'Mobile Safari', 'Firefox', 'Edge', 'Samsung Internet'] as const;
export const OPERATING_SYSTEMS = ['iOS', 'Android', 'Windows', 'Mac OS X', 'Linux'] as const;
export const BOUNCE_TYPES = ['hard', 'soft', 'soft', 'soft'] as const;
export const CANCEL_REASONS = ['customer', 'inventory', 'fraud', 'declined', 'other'] as const;
export const ORDER_SOURCES = ['web', 'shopify_draft_order', 'iphone', 'android', 'pos'] as const;
export const DISCOUNT_CODES = ['WELCOME10', 'FREESHIP', 'VIP20', 'BFCM30', 'THANKYOU15', 'SPRING25'] as const;
