/**
 * The Kubernetes protobuf wire format (`application/vnd.kubernetes.protobuf`), decoded by hand
 * for the one message kubectl sends that way here: a Namespace to create. The body is the magic
 * `k8s\0` then a runtime.Unknown {1: TypeMeta {1: apiVersion, 2: kind}, 2: raw, 3:
 * contentEncoding, 4: contentType}, `raw` being the v1.Namespace {1: ObjectMeta, 2: NamespaceSpec
 * {1: finalizers}, 3: NamespaceStatus {1: phase}} (k8s.io/api core/v1 generated.proto).
 *
 * Supported: of ObjectMeta, name, generateName, namespace, labels, annotations and finalizers
 * (the fields a client sets on create); other fields and other kinds are refused, never guessed.
 */
import { badRequest } from "./status.js";

export const PROTOBUF = "application/vnd.kubernetes.protobuf";
const MAGIC = Buffer.from([0x6b, 0x38, 0x73, 0x00]);

interface Field {
  no: number;
  wire: number;
  /** Length-delimited payload, or undefined for varints (their value is in `varint`). */
  bytes?: Buffer;
  varint?: bigint;
}

function readVarint(buf: Buffer, at: number): { value: bigint; next: number } {
  let value = 0n;
  let shift = 0n;
  for (let i = at; i < buf.length && i < at + 10; i++) {
    const b = buf[i] ?? 0;
    value |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return { value, next: i + 1 };
    shift += 7n;
  }
  throw badRequest("the protobuf body is truncated (an unterminated varint)");
}

function fields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let at = 0;
  while (at < buf.length) {
    const tag = readVarint(buf, at);
    at = tag.next;
    const no = Number(tag.value >> 3n);
    const wire = Number(tag.value & 7n);
    if (wire === 0) {
      const v = readVarint(buf, at);
      out.push({ no, wire, varint: v.value });
      at = v.next;
    } else if (wire === 2) {
      const len = readVarint(buf, at);
      const end = len.next + Number(len.value);
      if (end > buf.length) throw badRequest("the protobuf body is truncated (a field runs past its end)");
      out.push({ no, wire, bytes: buf.subarray(len.next, end) });
      at = end;
    } else if (wire === 1 || wire === 5) {
      at += wire === 1 ? 8 : 4;
      out.push({ no, wire });
    } else throw badRequest(`the protobuf body has a field of unsupported wire type ${wire}`);
  }
  return out;
}

const text = (f: Field | undefined): string | undefined => f?.bytes?.toString("utf8");

function stringMap(entries: Field[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of entries) {
    const kv = fields(e.bytes ?? Buffer.alloc(0));
    out[text(kv.find((f) => f.no === 1)) ?? ""] = text(kv.find((f) => f.no === 2)) ?? "";
  }
  return out;
}

function objectMeta(buf: Buffer): Record<string, unknown> {
  const fs = fields(buf);
  const meta: Record<string, unknown> = {};
  const one = (no: number, key: string) => {
    const v = text(fs.find((f) => f.no === no));
    if (v !== undefined && v !== "") meta[key] = v;
  };
  one(1, "name");
  one(2, "generateName");
  one(3, "namespace");
  const labels = fs.filter((f) => f.no === 11);
  if (labels.length > 0) meta.labels = stringMap(labels);
  const annotations = fs.filter((f) => f.no === 12);
  if (annotations.length > 0) meta.annotations = stringMap(annotations);
  const finalizers = fs.filter((f) => f.no === 14).map(text);
  if (finalizers.length > 0) meta.finalizers = finalizers;
  return meta;
}

/** A protobuf-encoded Namespace as the JSON object it stands for. */
export function decodeNamespace(body: Buffer): Record<string, unknown> {
  if (body.length < 4 || !body.subarray(0, 4).equals(MAGIC)) throw badRequest('the protobuf body does not start with the Kubernetes magic "k8s\\x00"');
  const unknown = fields(body.subarray(4));
  const typeMeta = fields(unknown.find((f) => f.no === 1)?.bytes ?? Buffer.alloc(0));
  const apiVersion = text(typeMeta.find((f) => f.no === 1)) ?? "";
  const kind = text(typeMeta.find((f) => f.no === 2)) ?? "";
  if (kind !== "Namespace" || apiVersion !== "v1") throw badRequest(`the lab's API server decodes protobuf only for v1 Namespace, not ${apiVersion || "(no apiVersion)"} ${kind || "(no kind)"}; send JSON`);
  const encoding = text(unknown.find((f) => f.no === 3));
  if (encoding) throw badRequest(`the protobuf body has content encoding ${encoding}, which is not supported`);
  const ns = fields(unknown.find((f) => f.no === 2)?.bytes ?? Buffer.alloc(0));
  const out: Record<string, unknown> = { apiVersion, kind, metadata: objectMeta(ns.find((f) => f.no === 1)?.bytes ?? Buffer.alloc(0)) };
  const spec = ns.find((f) => f.no === 2);
  if (spec?.bytes) {
    const fin = fields(spec.bytes).filter((f) => f.no === 1).map(text);
    out.spec = fin.length > 0 ? { finalizers: fin } : {};
  }
  return out;
}
