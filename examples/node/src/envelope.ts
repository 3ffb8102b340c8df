// The CloudEvents envelope (Kafka protocol binding, binary content mode) and W3C trace context.
import { randomBytes } from 'node:crypto';
import { CloudEvent, Kafka, ValidationError } from 'cloudevents';
import { InputError } from './application';

export const CE_TYPE_APPLICATION = 'id.go.ptsp.permit.application.submitted.v1';
export const CE_TYPE_RENEWAL = 'id.go.ptsp.permit.renewal.submitted.v1';
// The gate refuses longer ce_id, ce_source and ce_type values (schemas/asyncapi.json).
const MAX_ATTRIBUTE_CHARS = 256;

/** The CloudEvents type of an application: the gate checks that it matches `action`. */
export function ceTypeFor(action: string | null): string {
  return action === 'RENEWAL' ? CE_TYPE_RENEWAL : CE_TYPE_APPLICATION;
}

/** RFC 3339 with the local UTC offset and milliseconds, e.g. 2025-03-04T09:15:00.000+08:00. */
export function rfc3339(date: Date = new Date()): string {
  const pad = (n: number, width = 2) => String(Math.trunc(Math.abs(n))).padStart(width, '0');
  const offsetMinutes = -date.getTimezoneOffset();
  const sign = offsetMinutes >= 0 ? '+' : '-';
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}` +
    `.${pad(date.getMilliseconds(), 3)}` +
    `${sign}${pad(offsetMinutes / 60)}:${pad(offsetMinutes % 60)}`
  );
}

export interface TraceContext {
  traceparent: string;
  traceId: string;
  tracestate: string | null;
}

const TRACEPARENT_V00 = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
// A later version may append fields after the flags; its first four fields keep their format.
const TRACEPARENT_LATER = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** Parses a W3C traceparent given on the command line (an InputError when malformed). */
export function parseTraceparent(value: string, tracestate: string | null): TraceContext {
  const v00 = TRACEPARENT_V00.exec(value);
  const later = v00 ? null : TRACEPARENT_LATER.exec(value);
  const traceId = v00 ? v00[1] : later && later[1] !== '00' && later[1] !== 'ff' ? later[2] : null;
  const parentId = v00 ? v00[2] : later ? later[3] : null;
  if (traceId === null || parentId === null || /^0+$/.test(traceId) || /^0+$/.test(parentId)) {
    throw new InputError(
      `--traceparent ${JSON.stringify(value)} is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)`,
    );
  }
  return { traceparent: value, traceId, tracestate };
}

/** A new trace: version 00, random trace id and parent id, sampled. */
export function newTrace(tracestate: string | null): TraceContext {
  let traceId = '';
  let parentId = '';
  // An all-zero id is invalid; drawing one is improbable, but cheap to rule out.
  while (/^0*$/.test(traceId)) traceId = randomBytes(16).toString('hex');
  while (/^0*$/.test(parentId)) parentId = randomBytes(8).toString('hex');
  return { traceparent: `00-${traceId}-${parentId}-01`, traceId, tracestate };
}

export interface OutgoingRecord {
  key: string | null;
  value: Buffer;
  headers: Record<string, string>;
}

function checkAttribute(name: string, value: string): void {
  if (value.trim() === '' || value.length > MAX_ATTRIBUTE_CHARS || value.includes('\u0000')) {
    throw new InputError(
      `${name} must be 1 to ${MAX_ATTRIBUTE_CHARS} characters without NUL, got ${JSON.stringify(value.slice(0, 64))}`,
    );
  }
}

/**
 * The Kafka record of one application in binary content mode: ce_* headers from the CloudEvents
 * SDK's Kafka binding, `content-type: application/json`, the JSON data as the value, the employer's
 * NIB as the key, and the trace context as the plain W3C `traceparent` / `tracestate` headers.
 *
 * The value is the file's bytes, not a re-serialisation of `data`: the gate tells a redelivery
 * (absorbed) from another event under the same ce_id (ID_CONFLICT) by those bytes, so the same
 * file sent under the same ce_id, by this client or another, is the same event.
 */
export function binaryRecord(options: {
  id: string;
  source: string;
  type: string;
  time: string;
  data: unknown;
  bytes: Buffer;
  key: string | null;
  trace: TraceContext;
}): OutgoingRecord {
  checkAttribute('--event-id', options.id);
  checkAttribute('--source', options.source);
  let event: CloudEvent<unknown>;
  try {
    event = new CloudEvent<unknown>({
      specversion: '1.0',
      id: options.id,
      source: options.source,
      type: options.type,
      time: options.time,
      datacontenttype: 'application/json',
      data: options.data,
    });
  } catch (err) {
    if (err instanceof ValidationError) {
      const details = (err.errors ?? [])
        .map((e) => (typeof e === 'string' ? e : `${e.instancePath} ${e.message ?? ''}`.trim()))
        .join('; ');
      throw new InputError(`not a valid CloudEvent: ${details || err.message}`);
    }
    throw err;
  }
  const message = Kafka.binary(event);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers)) {
    // The binding maps datacontenttype to `content-type` already; the SDK also repeats it as
    // ce_datacontenttype, which the binding does not define. Unset attributes come as undefined.
    if (name === 'ce_datacontenttype' || typeof value !== 'string') continue;
    headers[name] = value;
  }
  headers.traceparent = options.trace.traceparent;
  if (options.trace.tracestate !== null) headers.tracestate = options.trace.tracestate;
  return { key: options.key, value: options.bytes, headers };
}
