'use strict';
// A charger made with ocpp-rpc (an independent OCPP-J implementation) in strict mode: every call and
// response in both directions is validated against ocpp-rpc's own copy of the OCPP schemas.
// Usage: node client.js URL IDENTITY PASSWORD PROTOCOL   (PROTOCOL: ocpp1.6 | ocpp2.0.1)
// Prints JSON lines: {"event":"ready",...} once charging (then waits for a TxProfile), and a final
// {"event":"done",...} with what the CSMS answered. Exits non-zero on any failure.
const { RPCClient } = require('ocpp-rpc');

const [url, identity, password, protocol] = process.argv.slice(2);
const v16 = protocol === 'ocpp1.6';
const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const now = () => new Date().toISOString();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function waitFor(predicate, ms, what) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      const value = predicate();
      if (value) return resolve(value);
      if (Date.now() - started > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

async function main() {
  const received = { profiles: [], configuration: {}, triggers: [] };
  let accepted = false;
  const cli = new RPCClient({
    endpoint: url,
    identity,
    password: password === '-' ? undefined : password,
    protocols: [protocol],
    strictMode: true,
    reconnect: false,
    callTimeoutMs: 10000,
  });

  const boot = async () => {
    const res = v16
      ? await cli.call('BootNotification', { chargePointVendor: 'ocpp-rpc', chargePointModel: 'strict' })
      : await cli.call('BootNotification', {
          chargingStation: { vendorName: 'ocpp-rpc', model: 'strict' },
          reason: 'PowerUp',
        });
    if (res.status === 'Accepted') accepted = true;
    return res;
  };

  if (v16) {
    cli.handle('ChangeConfiguration', ({ params }) => {
      received.configuration[params.key] = params.value;
      return { status: 'Accepted' };
    });
    cli.handle('TriggerMessage', ({ params }) => {
      received.triggers.push(params.requestedMessage);
      if (params.requestedMessage === 'BootNotification') setImmediate(() => boot().catch(() => {}));
      return { status: 'Accepted' };
    });
  } else {
    cli.handle('SetVariables', ({ params }) => {
      for (const item of params.setVariableData) {
        received.configuration[`${item.component.name}.${item.variable.name}`] = item.attributeValue;
      }
      return {
        setVariableResult: params.setVariableData.map((item) => ({
          attributeStatus: 'Accepted',
          component: item.component,
          variable: item.variable,
        })),
      };
    });
    cli.handle('TriggerMessage', ({ params }) => {
      received.triggers.push(params.requestedMessage);
      if (params.requestedMessage === 'BootNotification') setImmediate(() => boot().catch(() => {}));
      return { status: 'Accepted' };
    });
  }
  cli.handle('SetChargingProfile', ({ params }) => {
    received.profiles.push(params);
    return { status: 'Accepted' };
  });

  await cli.connect();
  const first = await boot();
  await waitFor(() => accepted, 10000, 'Boot Accepted');

  const result = { firstBoot: first.status, accepted };
  if (v16) {
    await cli.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Preparing' });
    result.authorize = (await cli.call('Authorize', { idTag: 'RPC-TAG-1' })).idTagInfo.status;
    const start = await cli.call('StartTransaction', {
      connectorId: 1, idTag: 'RPC-TAG-1', meterStart: 100, timestamp: now(),
    });
    result.transactionId = start.transactionId;
    result.startAuth = start.idTagInfo.status;
    await cli.call('StatusNotification', { connectorId: 1, errorCode: 'NoError', status: 'Charging' });
    await cli.call('MeterValues', {
      connectorId: 1,
      transactionId: start.transactionId,
      meterValue: [{
        timestamp: now(),
        sampledValue: [
          { value: '1100', measurand: 'Energy.Active.Import.Register', unit: 'Wh', context: 'Sample.Periodic' },
          { value: '15.5', measurand: 'Current.Import', phase: 'L1', unit: 'A', context: 'Sample.Periodic' },
          { value: '15.6', measurand: 'Current.Import', phase: 'L2', unit: 'A', context: 'Sample.Periodic' },
          { value: '15.7', measurand: 'Current.Import', phase: 'L3', unit: 'A', context: 'Sample.Periodic' },
        ],
      }],
    });
  } else {
    await cli.call('StatusNotification', {
      timestamp: now(), connectorStatus: 'Occupied', evseId: 1, connectorId: 1,
    });
    result.authorize = (await cli.call('Authorize', { idToken: { idToken: 'RPC-TAG-1', type: 'ISO14443' } }))
      .idTokenInfo.status;
    const start = await cli.call('TransactionEvent', {
      eventType: 'Started', timestamp: now(), triggerReason: 'Authorized', seqNo: 0,
      transactionInfo: { transactionId: 'rpc-tx-1', chargingState: 'Charging' },
      evse: { id: 1, connectorId: 1 },
      idToken: { idToken: 'RPC-TAG-1', type: 'ISO14443' },
      meterValue: [{ timestamp: now(), sampledValue: [
        { value: 100, measurand: 'Energy.Active.Import.Register', context: 'Transaction.Begin' },
      ] }],
    });
    result.transactionId = 'rpc-tx-1';
    result.startAuth = start.idTokenInfo.status;
    await cli.call('MeterValues', {
      evseId: 1,
      meterValue: [{ timestamp: now(), sampledValue: [
        { value: 1100, measurand: 'Energy.Active.Import.Register', context: 'Sample.Periodic' },
        { value: 15.5, measurand: 'Current.Import', phase: 'L1', context: 'Sample.Periodic' },
        { value: 15.6, measurand: 'Current.Import', phase: 'L2', context: 'Sample.Periodic' },
        { value: 15.7, measurand: 'Current.Import', phase: 'L3', context: 'Sample.Periodic' },
      ] }],
    });
  }

  emit({ event: 'ready', transactionId: result.transactionId });
  const txProfile = await waitFor(
    () => received.profiles.find((p) => (v16 ? p.csChargingProfiles : p.chargingProfile).chargingProfilePurpose === 'TxProfile'),
    10000,
    'a TxProfile',
  );
  result.txProfile = txProfile;

  if (v16) {
    const stop = await cli.call('StopTransaction', {
      transactionId: result.transactionId, meterStop: 2100, timestamp: now(), idTag: 'RPC-TAG-1', reason: 'Local',
    });
    result.stopAuth = stop.idTagInfo.status;
  } else {
    const stop = await cli.call('TransactionEvent', {
      eventType: 'Ended', timestamp: now(), triggerReason: 'StopAuthorized', seqNo: 1,
      transactionInfo: { transactionId: 'rpc-tx-1', stoppedReason: 'Local' },
      idToken: { idToken: 'RPC-TAG-1', type: 'ISO14443' },
      meterValue: [{ timestamp: now(), sampledValue: [
        { value: 2100, measurand: 'Energy.Active.Import.Register', context: 'Transaction.End' },
      ] }],
    });
    result.stopAuth = stop.idTokenInfo.status;
  }
  result.profiles = received.profiles;
  result.configuration = received.configuration;
  result.triggers = received.triggers;
  emit({ event: 'done', ...result });
  await cli.close({ code: 1000 });
}

main().then(
  () => process.exit(0),
  async (err) => {
    emit({ event: 'error', message: String(err && err.stack ? err.stack : err) });
    await sleep(10);
    process.exit(1);
  },
);
