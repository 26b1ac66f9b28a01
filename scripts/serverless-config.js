// Values serverless.yml takes from the environment that YAML alone cannot express: lists from
// comma-separated variables, and checks that fail a deployment early with a message naming the variable
// (instead of CloudFormation failing later on an empty dynamic reference). The `local` stage needs none
// of it: it reads DATABASE_URL and friends as they are.
function ids(name) {
  return (process.env[name] ?? '')
    .split(',')
    .map((id) => id.trim())
    .filter((id) => id.length > 0);
}

function required(name, why) {
  const value = (process.env[name] ?? '').trim();
  if (!value) throw new Error(`${name} must be set to deploy: ${why}. See README "Deploy".`);
  return value;
}

// The aggregate function's schedule: one EventBridge rule per run AGGREGATE_RUNS asks for, each
// passing its run's index as the event, so that the runs start together on their own shares of the
// accounts (lib/app/scheduledAggregation.ts). Each run holds a connection: the function's reserved
// concurrency must let them all in.
function aggregateSchedules() {
  const text = (process.env.AGGREGATE_RUNS || '1').trim();
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 16)
    throw new Error('AGGREGATE_RUNS must be a whole number from 1 to 16');
  const runs = Number(text);
  const reserved = Number((process.env.AGGREGATE_RESERVED_CONCURRENCY || '1').trim());
  if (!(reserved >= runs))
    throw new Error(
      `AGGREGATE_RESERVED_CONCURRENCY (${reserved}) must be at least AGGREGATE_RUNS (${runs}): each run is an instance`,
    );
  const enabledText = (process.env.AGGREGATE_SCHEDULE_ENABLED || 'true').trim();
  if (enabledText !== 'true' && enabledText !== 'false')
    throw new Error('AGGREGATE_SCHEDULE_ENABLED must be true or false');
  const rate = (process.env.AGGREGATE_RATE || 'rate(5 minutes)').trim();
  return Array.from({ length: runs }, (_, run) => ({
    schedule: { rate, enabled: enabledText === 'true', ...(runs > 1 ? { input: { run } } : {}) },
  }));
}

// The ingest queue's alarms (serverless.yml): where they notify, and how old the oldest waiting
// message may grow before they do. Without ALARM_TOPIC_ARN the alarms still change state in
// CloudWatch, for a subscription made there.
function queueAlarms() {
  const topic = (process.env.ALARM_TOPIC_ARN || '').trim();
  if (topic && !/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/.test(topic))
    throw new Error('ALARM_TOPIC_ARN must be the ARN of an SNS topic (arn:aws:sns:<region>:<account>:<name>)');
  const ageText = (process.env.INGEST_QUEUE_AGE_ALARM_S || '900').trim();
  // SQS reports the age once a minute; the queue keeps messages four days (MessageRetentionPeriod).
  if (!/^\d+$/.test(ageText) || Number(ageText) < 60 || Number(ageText) > 345600)
    throw new Error('INGEST_QUEUE_AGE_ALARM_S must be a whole number of seconds from 60 to 345600');
  return { alarmActions: topic ? [topic] : [], ingestQueueAgeAlarmSeconds: Number(ageText) };
}

module.exports = async ({ resolveVariable }) => {
  const stage = await resolveVariable('sls:stage');
  // What every stage resolves alike, whatever its database settings.
  const everyStage = { aggregateSchedules: aggregateSchedules(), ...queueAlarms() };
  const driver = process.env.DB_DRIVER || 'postgres';
  if (driver !== 'postgres' && driver !== 'data-api') throw new Error('DB_DRIVER must be postgres or data-api');

  // Optional: VPC_SUBNET_IDS and VPC_SECURITY_GROUP_IDS put every function in the database's VPC.
  const subnetIds = ids('VPC_SUBNET_IDS');
  const securityGroupIds = ids('VPC_SECURITY_GROUP_IDS');
  if ((subnetIds.length === 0) !== (securityGroupIds.length === 0)) {
    throw new Error('Set both VPC_SUBNET_IDS and VPC_SECURITY_GROUP_IDS, or neither.');
  }
  const vpc = subnetIds.length > 0 ? { subnetIds, securityGroupIds } : false;

  // serverless.yml resolves every stage's values, chosen or not: the local stage gets inert ones.
  const inert = {
    dbHost: 'unused',
    dbPort: '5432',
    dbUser: 'unused',
    dbConnectArn: 'arn:aws:rds-db:us-east-1:000000000000:dbuser:unused/unused',
  };
  if (stage === 'local')
    return {
      ...everyStage,
      driver,
      environmentSet: 'local',
      vpc,
      dbSecretArn: 'unused-locally',
      dbClusterArn: 'unused-locally',
      dbName: 'unused-locally',
      ...inert,
    };
  if (driver === 'data-api') {
    return {
      ...everyStage,
      driver,
      environmentSet: 'data-api',
      vpc,
      dbSecretArn: required('DB_SECRET_ARN', 'the ARN of the Aurora cluster secret the Data API uses'),
      dbClusterArn: required('DB_CLUSTER_ARN', 'DB_DRIVER=data-api needs the Aurora cluster ARN'),
      dbName: required('DB_NAME', 'DB_DRIVER=data-api needs the database name'),
      ...inert,
    };
  }

  // The postgres driver: where to connect is configuration, not a secret; the password never is in
  // a function setting: an IAM token (DB_AUTH=iam, the default) or the secret read at run time.
  const auth = (process.env.DB_AUTH || 'iam').trim();
  if (auth !== 'iam' && auth !== 'secret') throw new Error('DB_AUTH must be iam or secret');
  const dbPort = (process.env.DB_PORT || '5432').trim();
  if (!/^\d+$/.test(dbPort)) throw new Error('DB_PORT must be a port number');
  const dbHost = required('DB_HOST', 'the database (or RDS Proxy) endpoint');
  const dbUser = required('DB_USER', 'the database user the functions connect as');
  const dbName = required('DB_NAME', 'the database name');
  return {
    ...everyStage,
    driver,
    environmentSet: auth === 'iam' ? 'postgres-iam' : 'postgres-secret',
    vpc,
    dbHost,
    dbPort,
    dbUser,
    dbName,
    dbClusterArn: 'unused-by-postgres',
    dbSecretArn:
      auth === 'secret'
        ? required('DB_SECRET_ARN', 'DB_AUTH=secret: the ARN of the secret holding the password')
        : 'unused-with-iam',
    dbConnectArn:
      auth === 'iam'
        ? required(
            'DB_CONNECT_ARN',
            'DB_AUTH=iam: arn:aws:rds-db:<region>:<account>:dbuser:<DbiResourceId>/<DB_USER> for rds-db:connect',
          )
        : inert.dbConnectArn,
  };
};
