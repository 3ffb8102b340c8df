// Submits one permit application to ptsp-gate and prints the compliance decision it gets back.
//
//   node dist/client.js --application FILE [--event-id ID] [--source URI] [--timeout SECONDS]
//                       [--traceparent TP] [--tracestate TS] [--no-validate]
//
// Environment: KAFKA_BOOTSTRAP_SERVERS (required), PTSP_GATE_TOPIC_APPLICATIONS,
// PTSP_GATE_TOPIC_DECISIONS, and optionally KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM,
// KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, KAFKA_SSL_CAFILE (see README.md).
//
// stdout: one JSON line with the decision. stderr: a short summary, errors ("error: ..."), and
// the Kafka client's warnings. Exit 0: a decision arrived (any outcome); 1: none arrived in time,
// or Kafka failed; 2: bad arguments, configuration or application file.
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import {
  Kafka,
  Partitioners,
  logLevel,
  type Admin,
  type Consumer,
  type IHeaders,
  type KafkaConfig,
  type LogEntry,
  type Producer,
} from 'kafkajs';
import type { ComplianceDecision } from '../build/generated/compliance-decision.v1';
import { InputError, loadApplication } from './application';
import { binaryRecord, ceTypeFor, newTrace, parseTraceparent, rfc3339 } from './envelope';

const USAGE =
  'usage: node dist/client.js --application FILE [--event-id ID] [--source URI] [--timeout SECONDS] ' +
  '[--traceparent TP] [--tracestate TS] [--no-validate]';
const DEFAULT_SOURCE = 'urn:ptsp:example:node';
const DEFAULT_TIMEOUT_S = 30;
const DEFAULT_TOPIC_APPLICATIONS = 'ptsp.permit-applications.v1';
const DEFAULT_TOPIC_DECISIONS = 'compliance.permit-decisions.v1';
// How long closing the Kafka connections may take before the process exits anyway.
const DISCONNECT_GRACE_MS = 5000;

// Set while the Kafka clients disconnect at the end.
let closing = false;

/** No decision (in time), or Kafka failed: exit code 1. */
class NoDecisionError extends Error {}

interface Options {
  applicationFile: string;
  eventId: string | null; // null: derived from the application file's bytes
  source: string;
  timeoutMs: number;
  traceparent: string | null;
  tracestate: string | null;
  validate: boolean;
}

function readArgs(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        application: { type: 'string' },
        'event-id': { type: 'string' },
        source: { type: 'string' },
        timeout: { type: 'string' },
        traceparent: { type: 'string' },
        tracestate: { type: 'string' },
        'no-validate': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }).values;
  } catch (err) {
    // e.g. "Unknown option '--foo'", "Option '--application <value>' argument missing"
    throw new InputError(`${(err as Error).message.split('\n')[0]}; ${USAGE}`);
  }
}

function parseOptions(argv: string[]): Options | 'help' {
  const values = readArgs(argv);
  if (values.help) return 'help';
  if (values.application === undefined || values.application === '') {
    throw new InputError(`--application FILE is required; ${USAGE}`);
  }
  let timeoutMs = DEFAULT_TIMEOUT_S * 1000;
  if (values.timeout !== undefined) {
    const seconds = Number(values.timeout);
    if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 86400) {
      throw new InputError(`--timeout must be a number of seconds above 0, got ${JSON.stringify(values.timeout)}; ${USAGE}`);
    }
    timeoutMs = seconds * 1000;
  }
  return {
    applicationFile: values.application,
    eventId: values['event-id'] ?? null,
    source: values.source ?? DEFAULT_SOURCE,
    timeoutMs,
    traceparent: values.traceparent ?? null,
    tracestate: values.tracestate ?? null,
    validate: !values['no-validate'],
  };
}

function env(name: string): string | undefined {
  const value = process.env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** kafkajs settings from the environment (InputError when they cannot work). */
function kafkaConfig(): KafkaConfig {
  const bootstrap = env('KAFKA_BOOTSTRAP_SERVERS');
  if (bootstrap === undefined) {
    throw new InputError('KAFKA_BOOTSTRAP_SERVERS is not set (comma-separated host:port list)');
  }
  const brokers = bootstrap.split(',').map((b) => b.trim()).filter((b) => b !== '');
  const config: KafkaConfig = {
    clientId: 'ptsp-gate-node-example',
    brokers,
    connectionTimeout: 5000,
    // Only warnings and errors, and on stderr: stdout carries the result alone.
    logLevel: logLevel.WARN,
    logCreator: () => (entry: LogEntry) => {
      // Once the result is out, problems while leaving the group and closing the connections
      // change nothing.
      if (closing) return;
      const { message, ...rest } = entry.log;
      delete (rest as Record<string, unknown>).timestamp;
      delete (rest as Record<string, unknown>).stack;
      process.stderr.write(`kafkajs ${entry.label} [${entry.namespace}] ${message} ${JSON.stringify(rest)}\n`);
    },
  };
  const protocol = (env('KAFKA_SECURITY_PROTOCOL') ?? 'PLAINTEXT').toUpperCase();
  if (!['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'].includes(protocol)) {
    throw new InputError(`KAFKA_SECURITY_PROTOCOL must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, got ${protocol}`);
  }
  if (protocol.endsWith('SSL')) {
    const caFile = env('KAFKA_SSL_CAFILE');
    let ca: string | undefined;
    if (caFile !== undefined) {
      try {
        ca = readFileSync(caFile, 'utf8');
      } catch (err) {
        throw new InputError(`cannot read KAFKA_SSL_CAFILE ${caFile}: ${(err as Error).message}`);
      }
    }
    config.ssl = ca === undefined ? true : { ca: [ca] };
  }
  if (protocol.startsWith('SASL')) {
    const mechanism = (env('KAFKA_SASL_MECHANISM') ?? 'SCRAM-SHA-512').toLowerCase();
    const username = env('KAFKA_SASL_USERNAME');
    const password = process.env.KAFKA_SASL_PASSWORD;
    if (username === undefined || password === undefined || password === '') {
      throw new InputError(`${protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD`);
    }
    if (mechanism === 'plain' || mechanism === 'scram-sha-256' || mechanism === 'scram-sha-512') {
      config.sasl = { mechanism, username, password } as KafkaConfig['sasl'];
    } else {
      throw new InputError('KAFKA_SASL_MECHANISM must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512');
    }
  }
  return config;
}

function header(headers: IHeaders | undefined, name: string): string | null {
  const raw = headers?.[name];
  const first = Array.isArray(raw) ? raw[0] : raw;
  if (first === undefined || first === null) return null;
  return Buffer.isBuffer(first) ? first.toString('utf8') : String(first);
}

interface Received {
  decision: ComplianceDecision;
  ceId: string | null;
  dataschema: string | null;
  traceparent: string | null;
}

/** Rejects with NoDecisionError at the deadline; `stop` clears the timer. */
function deadline(ms: number, what: () => string): { promise: Promise<never>; stop: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NoDecisionError(what())), ms);
  });
  promise.catch(() => undefined);
  return { promise, stop: () => clearTimeout(timer) };
}

async function run(options: Options): Promise<number> {
  const started = Date.now();
  const application = loadApplication(options.applicationFile, options.validate);
  const trace =
    options.traceparent === null
      ? newTrace(options.tracestate)
      : parseTraceparent(options.traceparent, options.tracestate);
  // By default the ce_id is the digest of the bytes sent: running the client again on the same
  // file (after a timeout, say) is the same event, which the gate absorbs instead of deciding
  // it twice; a corrected file is a new event.
  const eventId = options.eventId ?? `sha256:${createHash('sha256').update(application.bytes).digest('hex')}`;
  const record = binaryRecord({
    id: eventId,
    source: options.source,
    type: ceTypeFor(application.action),
    time: rfc3339(),
    data: application.data,
    bytes: application.bytes,
    key: application.nib,
    trace,
  });
  const config = kafkaConfig();
  const applicationsTopic = env('PTSP_GATE_TOPIC_APPLICATIONS') ?? DEFAULT_TOPIC_APPLICATIONS;
  const decisionsTopic = env('PTSP_GATE_TOPIC_DECISIONS') ?? DEFAULT_TOPIC_DECISIONS;
  if (application.applicationId === null) {
    process.stderr.write('warning: the application has no application_id; no decision can be matched to it\n');
  }

  const kafka = new Kafka(config);
  // Whatever was started, to be closed at the end.
  const clients: { admin?: Admin; consumer?: Consumer; producer?: Producer } = {};
  let phase = 'connecting to Kafka';
  const limit = deadline(
    options.timeoutMs,
    () =>
      `no decision for application ${application.applicationId ?? '(without application_id)'} ` +
      `within ${options.timeoutMs / 1000} s (while ${phase}; ce_id ${eventId}: an event resent ` +
      `under a ce_id the gate already accepted is absorbed and gets no new decision)`,
  );
  try {
    const work = (async (): Promise<Received> => {
      // 1. Where the decisions topic ends now: the decision will come after these offsets.
      phase = `reading the end offsets of ${decisionsTopic}`;
      const admin = kafka.admin();
      clients.admin = admin;
      await admin.connect();
      const ends = await admin.fetchTopicOffsets(decisionsTopic);
      await admin.disconnect();

      // 2. Start reading from there before publishing, so that the decision cannot be missed.
      // kafkajs consumes only through a consumer group: a new group per run, positioned
      // explicitly at the offsets above, never committing.
      phase = `joining a consumer group on ${decisionsTopic}`;
      const reader = kafka.consumer({
        groupId: `ptsp-gate-node-example-${randomUUID()}`,
        // Short fetch waits, so that disconnecting at the end is quick.
        maxWaitTimeInMs: 500,
      });
      clients.consumer = reader;
      const joined = new Promise<void>((resolve) => {
        reader.on(reader.events.GROUP_JOIN, () => resolve());
      });
      let found: (received: Received) => void = () => undefined;
      const decided = new Promise<Received>((resolve) => {
        found = resolve;
      });
      await reader.connect();
      await reader.subscribe({ topics: [decisionsTopic], fromBeginning: false });
      await reader.run({
        autoCommit: false,
        eachMessage: async ({ message }) => {
          const subject = header(message.headers, 'ce_subject');
          if (application.applicationId === null) return;
          if (subject !== null && subject !== application.applicationId) return;
          let decision: ComplianceDecision;
          try {
            decision = JSON.parse(message.value?.toString('utf8') ?? 'null') as ComplianceDecision;
          } catch {
            return; // not a JSON decision
          }
          if (decision === null || typeof decision !== 'object') return;
          // Without ce_subject, the decision's own application_id says whose it is.
          if (subject === null && decision.application_id !== application.applicationId) return;
          found({
            decision,
            ceId: header(message.headers, 'ce_id'),
            dataschema: header(message.headers, 'ce_dataschema'),
            traceparent:
              header(message.headers, 'ce_traceparent') ?? header(message.headers, 'traceparent'),
          });
        },
      });
      // Applied when the group assigns the partitions (a seek before that waits for it).
      for (const { partition, high } of ends) {
        reader.seek({ topic: decisionsTopic, partition, offset: high });
      }
      await joined;

      // 3. Publish the application: idempotent producer, acknowledged by all in-sync replicas.
      phase = `publishing to ${applicationsTopic}`;
      const writer = kafka.producer({
        idempotent: true,
        maxInFlightRequests: 1,
        // The Java client's partitioner (murmur2 of the key), so a NIB lands on the same
        // partition whichever client sent it.
        createPartitioner: Partitioners.DefaultPartitioner,
      });
      clients.producer = writer;
      await writer.connect();
      await writer.send({
        topic: applicationsTopic,
        acks: -1,
        messages: [{ key: record.key, value: record.value, headers: record.headers }],
      });

      // 4. The first decision about this application.
      phase = `waiting for the decision on ${decisionsTopic}`;
      return decided;
    })();
    const received = await Promise.race([work, limit.promise]);

    const { decision } = received;
    const reasons = Array.isArray(decision.reasons) ? decision.reasons.map((r) => r.code) : [];
    const result = {
      application_id: application.applicationId,
      event_id: eventId,
      outcome: decision.outcome ?? null,
      decision_id: decision.decision_id ?? null,
      supersedes: decision.supersedes ?? null,
      reasons,
      decision,
      decision_ce_id: received.ceId,
      dataschema: received.dataschema,
      trace_id_sent: trace.traceId,
      traceparent_received: received.traceparent,
    };
    process.stdout.write(`${JSON.stringify(result)}\n`);
    process.stderr.write(summary(result.application_id, decision, applicationsTopic, started));
    return 0;
  } finally {
    limit.stop();
    closing = true;
    const disconnected = Promise.allSettled(
      [clients.admin, clients.consumer, clients.producer].map((c) => c?.disconnect()),
    );
    const grace = new Promise((resolve) => setTimeout(resolve, DISCONNECT_GRACE_MS).unref());
    await Promise.race([disconnected, grace]);
  }
}

/** A few lines for a person: the outcome, each reason, what it replaces, what to do. */
function summary(
  applicationId: string | null,
  decision: ComplianceDecision,
  applicationsTopic: string,
  started: number,
): string {
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const lines = [`${applicationId}: ${decision.outcome} (decision ${decision.decision_id}, ${seconds} s)`];
  for (const reason of Array.isArray(decision.reasons) ? decision.reasons : []) {
    const effect = typeof reason.details?.effect === 'string' ? ` [${reason.details.effect}]` : '';
    lines.push(`  ${reason.code}${effect}: ${oneLine(String(reason.message))}`);
  }
  if (decision.supersedes) lines.push(`  replaces decision ${decision.supersedes}`);
  if (decision.outcome === 'REJECTED') {
    lines.push(
      `  the event is also on ${applicationsTopic}.dlq; correct it and send it under a new --event-id`,
    );
  }
  return `${lines.join('\n')}\n`;
}

function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}

async function main(): Promise<number> {
  try {
    const options = parseOptions(process.argv.slice(2));
    if (options === 'help') {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    return await run(options);
  } catch (err) {
    if (err instanceof InputError) {
      process.stderr.write(`error: ${oneLine(err.message)}\n`);
      return 2;
    }
    if (err instanceof NoDecisionError) {
      process.stderr.write(`error: ${oneLine(err.message)}\n`);
      return 1;
    }
    process.stderr.write(`error: Kafka: ${oneLine((err as Error).message ?? String(err))}\n`);
    return 1;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`error: ${oneLine(String(err))}\n`);
    process.exit(1);
  },
);
