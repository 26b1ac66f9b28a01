import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { secretsInTemplate } from '../../scripts/package';
import { testDriver } from '../support/env';
import { ROOT } from './support/routes';

/**
 * The CloudFormation template `npm run package` builds for a deployed stage, read as CloudFormation
 * would deploy it: no secret and no dynamic reference in any function's settings, every wait of a
 * function inside its timeout, bursts bounded (API Gateway throttling, reserved concurrency) so that
 * the connections the stage can open stay below the database's max_connections.
 */
interface LambdaResource {
  Type: string;
  Properties: {
    Timeout?: number;
    ReservedConcurrentExecutions?: number | string;
    Environment?: { Variables?: Record<string, string> };
  };
}
type Template = { Resources: Record<string, LambdaResource & { Properties: Record<string, unknown> }> };

// PostgreSQL's default; the documented arithmetic (docs/operations.md) uses the database's own value.
const MAX_CONNECTIONS = 100;
const SUPERUSER_RESERVED = 3;

function packageStage(env: Record<string, string>): Template {
  const clean: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(DB_|DATABASE_URL|API_KEYS|AWS_|KLAVIYO_TEST)/.test(k)) clean[k] = v;
  }
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/package.ts', '--stage', 'prod'], {
    cwd: ROOT,
    env: { ...clean, ...env },
    encoding: 'utf8',
  });
  if (run.status !== 0) throw new Error(`npm run package failed:\n${run.stdout}\n${run.stderr}`);
  return JSON.parse(readFileSync(join(ROOT, '.serverless', 'cloudformation-template-update-stack.json'), 'utf8'));
}

function functionsOf(template: Template): [string, LambdaResource][] {
  return Object.entries(template.Resources).filter(([, r]) => r.Type === 'AWS::Lambda::Function');
}

// Packaging runs osls and esbuild: once per database setting, in the postgres project only.
const describeOnce = testDriver() === 'postgres' ? describe : describe.skip;

describeOnce('the packaged CloudFormation template', () => {
  const templates: Record<string, Template> = {};
  beforeAll(() => {
    templates.iam = packageStage({ DB_AUTH: 'iam' });
    templates.secret = packageStage({ DB_AUTH: 'secret' });
  }, 180_000);

  it.each(['iam', 'secret'])('DB_AUTH=%s: no secret value and no dynamic reference in any function setting', (auth) => {
    const template = templates[auth] as Template;
    expect(functionsOf(template).length).toBeGreaterThan(5);
    expect(secretsInTemplate(template)).toEqual([]);
    for (const [, fn] of functionsOf(template)) {
      const variables = fn.Properties.Environment?.Variables ?? {};
      expect(JSON.stringify(variables)).not.toContain('{{resolve:');
      expect(Object.keys(variables)).not.toContain('DB_PASSWORD');
      expect(Object.keys(variables)).not.toContain('API_KEYS');
      // TLS that cannot be dropped: verify-full against a CA bundle.
      if (variables.DB_DRIVER === 'postgres') {
        expect(variables).toMatchObject({ DB_SSL: 'verify-full', DB_SSL_ROOT_CERT: expect.any(String) });
      }
    }
    const sample = functionsOf(template)[0]?.[1].Properties.Environment?.Variables ?? {};
    expect(auth === 'iam' ? sample.DB_IAM_AUTH : sample.DB_SECRET_ARN).toBeTruthy();
  });

  it('the check itself finds a dynamic reference and a password', () => {
    const planted = JSON.parse(JSON.stringify(templates.iam)) as Template;
    const [, fn] = functionsOf(planted)[0] as [string, LambdaResource];
    fn.Properties.Environment = {
      Variables: { DB_PASSWORD: 'hunter2', DB_HOST: '{{resolve:secretsmanager:arn:x:SecretString:host}}' },
    };
    expect(secretsInTemplate(planted)).toHaveLength(2);
  });

  it("every function's database waits fit inside its timeout", () => {
    for (const [name, fn] of functionsOf(templates.iam as Template)) {
      const v = fn.Properties.Environment?.Variables ?? {};
      // The chart page never touches the database.
      if (!v.DB_DRIVER || name.startsWith('Ui')) continue;
      const connectMs = Number(v.DB_CONNECT_TIMEOUT_S) * 1000;
      const attempts = 1 + Number(v.DB_CONNECT_RETRIES);
      const waits = connectMs * attempts + Number(v.DB_STATEMENT_TIMEOUT_MS) + Number(v.RESPONSE_MARGIN_MS);
      const timeoutMs = Number(fn.Properties.Timeout) * 1000;
      expect({ name, fits: waits <= timeoutMs, waits, timeoutMs }).toMatchObject({ name, fits: true });
    }
  });

  it('bounds bursts: API Gateway throttling, and reserved concurrency below max_connections', () => {
    const template = templates.iam as Template;
    const stage = template.Resources.HttpApiStage?.Properties as {
      DefaultRouteSettings?: { ThrottlingBurstLimit?: number; ThrottlingRateLimit?: number };
    };
    expect(Number(stage.DefaultRouteSettings?.ThrottlingBurstLimit)).toBeGreaterThan(0);
    expect(Number(stage.DefaultRouteSettings?.ThrottlingRateLimit)).toBeGreaterThan(0);
    let connections = 0;
    for (const [name, fn] of functionsOf(template)) {
      if (!fn.Properties.Environment?.Variables?.DB_DRIVER || name.startsWith('Ui')) continue;
      const reserved = Number(fn.Properties.ReservedConcurrentExecutions);
      expect({ name, reserved: reserved > 0 }).toEqual({ name, reserved: true });
      connections += reserved * Number(fn.Properties.Environment.Variables.DB_POOL_MAX);
    }
    expect(connections).toBeLessThan(MAX_CONNECTIONS - SUPERUSER_RESERVED);
  });

  it('the ingest queue alarms by default, 15 minutes for its oldest message, with no topic to notify', () => {
    const template = templates.iam as Template;
    const age = queueAlarm(template, 'IngestQueue', 'ApproximateAgeOfOldestMessage');
    expect(Number(age?.Threshold)).toBe(900);
    expect(age?.AlarmActions).toEqual([]);
    expect(queueAlarm(template, 'IngestDeadLetterQueue', 'ApproximateNumberOfMessagesVisible')?.AlarmActions).toEqual(
      [],
    );
  });

  it('one aggregator run on the schedule by default, its event without a run index', () => {
    const rules = aggregateRules(templates.iam as Template);
    expect(rules).toHaveLength(1);
    expect(rules[0]?.Targets?.[0]?.Input).toBeUndefined();
  });
});

interface RuleProperties {
  ScheduleExpression?: string;
  State?: string;
  Targets?: { Arn?: unknown; Input?: string }[];
}

/** The EventBridge rules whose target is the aggregate function. */
function aggregateRules(template: Template): RuleProperties[] {
  return Object.values(template.Resources)
    .filter((r) => r.Type === 'AWS::Events::Rule')
    .map((r) => r.Properties as RuleProperties)
    .filter((p) => JSON.stringify(p.Targets ?? []).includes('AggregateLambdaFunction'));
}

const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:ops-alerts';

interface AlarmProperties {
  Namespace?: string;
  MetricName?: string;
  Dimensions?: { Name?: string; Value?: unknown }[];
  Threshold?: number | string;
  ComparisonOperator?: string;
  AlarmActions?: unknown[];
  OKActions?: unknown[];
}

/** The CloudWatch alarm on `metric` of the SQS queue whose logical id is `queue`. */
function queueAlarm(template: Template, queue: string, metric: string): AlarmProperties | undefined {
  return Object.values(template.Resources)
    .filter((r) => r.Type === 'AWS::CloudWatch::Alarm')
    .map((r) => r.Properties as AlarmProperties)
    .find(
      (p) =>
        p.Namespace === 'AWS/SQS' &&
        p.MetricName === metric &&
        JSON.stringify(p.Dimensions) ===
          JSON.stringify([{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queue, 'QueueName'] } }]),
    );
}

describeOnce(
  'the ingest queue and parallel aggregator runs in the packaged template (docs/queue.md, docs/scaling.md)',
  () => {
    let template: Template;
    beforeAll(() => {
      template = packageStage({
        DB_AUTH: 'iam',
        AGGREGATE_RUNS: '2',
        AGGREGATE_RESERVED_CONCURRENCY: '2',
        ALARM_TOPIC_ARN: TOPIC,
        INGEST_QUEUE_AGE_ALARM_S: '600',
      });
    }, 180_000);

    it('AGGREGATE_RUNS=2: two rules on the same schedule, each naming its run, and the function told how many', () => {
      const rules = aggregateRules(template);
      expect(rules.map((r) => r.Targets?.[0]?.Input).sort()).toEqual(['{"run":0}', '{"run":1}']);
      expect(new Set(rules.map((r) => r.ScheduleExpression))).toEqual(new Set(['rate(5 minutes)']));
      const aggregate = template.Resources.AggregateLambdaFunction?.Properties as LambdaResource['Properties'];
      expect(aggregate.Environment?.Variables?.AGGREGATE_RUNS).toBe('2');
      expect(Number(aggregate.ReservedConcurrentExecutions)).toBe(2);
    });

    it('refuses more runs than the aggregate function may have instances', () => {
      expect(() => packageStage({ DB_AUTH: 'iam', AGGREGATE_RUNS: '3', AGGREGATE_RESERVED_CONCURRENCY: '2' })).toThrow(
        /AGGREGATE_RESERVED_CONCURRENCY \(2\) must be at least AGGREGATE_RUNS \(3\)/,
      );
    });

    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- CloudFormation properties, read freely
    type AnyProperties = Record<string, any>;
    const resource = (type: string) =>
      Object.entries(template.Resources).filter(([, r]) => r.Type === type) as [
        string,
        { Properties: AnyProperties },
      ][];

    it('the consumer: SQS event source with a batch window, partial batch failures, and as many writers as it has reserved', () => {
      const [mapping] = resource('AWS::Lambda::EventSourceMapping').map(([, r]) => r.Properties);
      expect(mapping).toBeDefined();
      expect(mapping?.EventSourceArn).toEqual({ 'Fn::GetAtt': ['IngestQueue', 'Arn'] });
      expect(Number(mapping?.MaximumBatchingWindowInSeconds)).toBeGreaterThan(0);
      expect(mapping?.FunctionResponseTypes).toEqual(['ReportBatchItemFailures']);
      const consumer = template.Resources.IngestConsumerLambdaFunction?.Properties as LambdaResource['Properties'];
      const writers = Number(mapping?.ScalingConfig?.MaximumConcurrency);
      expect(writers).toBeGreaterThanOrEqual(2);
      // Reserved concurrency below maximumConcurrency would throttle the event source's invocations.
      expect(Number(consumer.ReservedConcurrentExecutions)).toBe(writers);
      expect(consumer.Environment?.Variables?.DB_POOL_MAX).toBe('1');
    });

    it('the queue: visibility timeout at least 6x the consumer timeout, a dead-letter queue, messages of the configured size', () => {
      const queue = template.Resources.IngestQueue?.Properties as AnyProperties;
      const consumer = template.Resources.IngestConsumerLambdaFunction?.Properties as LambdaResource['Properties'];
      expect(Number(queue.VisibilityTimeout)).toBeGreaterThanOrEqual(6 * Number(consumer.Timeout));
      expect(queue.RedrivePolicy).toMatchObject({
        deadLetterTargetArn: { 'Fn::GetAtt': ['IngestDeadLetterQueue', 'Arn'] },
      });
      expect(Number(queue.RedrivePolicy.maxReceiveCount)).toBeGreaterThan(1);
      expect(template.Resources.IngestDeadLetterQueue?.Type).toBe('AWS::SQS::Queue');
      const ingest = template.Resources.IngestLambdaFunction?.Properties as LambdaResource['Properties'];
      expect(Number(queue.MaximumMessageSize)).toBe(
        Number(ingest.Environment?.Variables?.INGEST_QUEUE_MESSAGE_MAX_BYTES),
      );
    });

    it('alarms on any dead letter and on the oldest waiting message, notifying ALARM_TOPIC_ARN', () => {
      const deadLetters = queueAlarm(template, 'IngestDeadLetterQueue', 'ApproximateNumberOfMessagesVisible');
      expect(deadLetters).toMatchObject({ ComparisonOperator: 'GreaterThanOrEqualToThreshold' });
      expect(Number(deadLetters?.Threshold)).toBe(1);
      const age = queueAlarm(template, 'IngestQueue', 'ApproximateAgeOfOldestMessage');
      expect(Number(age?.Threshold)).toBe(600);
      for (const alarm of [deadLetters, age]) {
        expect(alarm?.AlarmActions).toEqual([TOPIC]);
        expect(alarm?.OKActions).toEqual([TOPIC]);
      }
    });

    it('refuses an ALARM_TOPIC_ARN that is not an SNS topic, and a queue age below a minute', () => {
      expect(() => packageStage({ DB_AUTH: 'iam', ALARM_TOPIC_ARN: 'ops-alerts' })).toThrow(
        /ALARM_TOPIC_ARN must be the ARN of an SNS topic/,
      );
      expect(() => packageStage({ DB_AUTH: 'iam', INGEST_QUEUE_AGE_ALARM_S: '30' })).toThrow(
        /INGEST_QUEUE_AGE_ALARM_S must be a whole number of seconds from 60/,
      );
    });

    it('the ingest routes send to it (queue mode by default when deployed), with the right to', () => {
      const ingest = template.Resources.IngestLambdaFunction?.Properties as LambdaResource['Properties'];
      expect(ingest.Environment?.Variables).toMatchObject({
        INGEST_MODE: 'queue',
        INGEST_QUEUE_URL: { Ref: 'IngestQueue' },
      });
      expect(JSON.stringify(template.Resources.IamRoleLambdaExecution)).toContain('sqs:SendMessage');
    });
  },
);
