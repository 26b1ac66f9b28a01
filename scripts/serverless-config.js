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

module.exports = async ({ resolveVariable }) => {
  const stage = await resolveVariable('sls:stage');
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
  if (stage === 'local')
    return { driver, vpc, dbSecretArn: 'unused-locally', dbClusterArn: 'unused-locally', dbName: 'unused-locally' };
  const dataApi = driver === 'data-api';
  return {
    driver,
    vpc,
    dbSecretArn: required(
      'DB_SECRET_ARN',
      'the ARN of the database secret (JSON: host, port, username, password, dbname)',
    ),
    dbClusterArn: dataApi
      ? required('DB_CLUSTER_ARN', 'DB_DRIVER=data-api needs the Aurora cluster ARN')
      : 'unused-by-postgres',
    dbName: dataApi ? required('DB_NAME', 'DB_DRIVER=data-api needs the database name') : 'unused-by-postgres',
  };
};
