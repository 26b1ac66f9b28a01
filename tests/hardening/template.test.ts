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
});
