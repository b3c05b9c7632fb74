/**
 * The machines as a table and as diagrams (`pgfed machines --format mermaid|json`), read from the
 * machine definitions themselves so that they can never drift from the code. Output is
 * deterministic: it follows the order of the definitions.
 */
import type { AnyStateMachine, AnyStateNode, AnyTransitionDefinition } from "xstate";
import { federationMachine } from "./federation.js";
import { memberMachine } from "./member.js";

export interface TransitionJson {
  /** State id the row is defined on, e.g. `federation.operation.switchover.demote`. */
  source: string;
  /** Event type as written in the machine, or `always` for eventless rows. */
  event: string;
  /** Short label: event and guard. */
  label: string;
  guard: string | null;
  /** Target state ids; empty when the row only records something. */
  targets: string[];
  actions: string[];
  description: string;
}

export interface StateJson {
  id: string;
  key: string;
  type: string;
  description: string;
  initial: string | null;
  invokes: Array<{ id: string; src: string }>;
  children: string[];
}

export interface MachineJson {
  id: string;
  description: string;
  states: StateJson[];
  transitions: TransitionJson[];
}

function allNodes(node: AnyStateNode): AnyStateNode[] {
  return [node, ...Object.values(node.states).flatMap((child) => allNodes(child))];
}

function nameOf(value: unknown): string {
  if (typeof value === "string") return value;
  if (typeof value === "function") {
    const fn = value as { name?: string; guards?: unknown[] };
    if (Array.isArray(fn.guards)) {
      if (fn.name === "not") return `!${nameOf(fn.guards[0])}`;
      return fn.guards.map(nameOf).join(fn.name === "or" ? " || " : " && ");
    }
    return fn.name || "inline";
  }
  if (value !== null && typeof value === "object" && "type" in value) {
    const { type, params } = value as { type: unknown; params?: unknown };
    if (params !== null && typeof params === "object") {
      const args = Object.values(params as Record<string, unknown>).filter((v) => typeof v === "string" || typeof v === "number");
      if (args.length > 0) return `${String(type)} ${args.join(" ")}`;
    }
    return String(type);
  }
  return "inline";
}

/** "xstate.done.actor.preflight" → "done preflight"; "xstate.after.tokenTimeout.federation.x" → "after tokenTimeout". */
export function eventLabel(eventType: string): string {
  const done = /^xstate\.done\.actor\.(.+)$/.exec(eventType);
  if (done) return `done ${done[1] ?? ""}`;
  const error = /^xstate\.error\.actor\.(.+)$/.exec(eventType);
  if (error) return `error ${error[1] ?? ""}`;
  const after = /^xstate\.after\.([^.]+)\./.exec(eventType);
  if (after) return `after ${after[1] ?? ""}`;
  return eventType;
}

function transitionJson(source: AnyStateNode, event: string, t: AnyTransitionDefinition): TransitionJson {
  const guard = t.guard === undefined ? null : nameOf(t.guard);
  const shortEvent = event === "always" ? "always" : eventLabel(event);
  return {
    source: source.id,
    event,
    label: guard ? `${shortEvent} [${guard}]` : shortEvent,
    guard,
    targets: (t.target ?? []).map((target: AnyStateNode) => target.id),
    actions: (t.actions as unknown[]).map(nameOf),
    description: t.description ?? "",
  };
}

function nodeTransitions(node: AnyStateNode): TransitionJson[] {
  const rows: TransitionJson[] = [];
  for (const [event, list] of node.transitions) {
    for (const t of list) rows.push(transitionJson(node, event, t));
  }
  for (const t of node.always ?? []) rows.push(transitionJson(node, "always", t));
  return rows;
}

export function machineAsJson(machine: AnyStateMachine): MachineJson {
  const nodes = allNodes(machine.root);
  return {
    id: machine.id,
    description: machine.root.description ?? "",
    states: nodes.map((node) => ({
      id: node.id,
      key: node.key,
      type: node.type,
      description: node.description ?? "",
      initial: node.initial?.target[0]?.key ?? null,
      invokes: node.invoke.map((inv) => ({ id: inv.id, src: typeof inv.src === "string" ? inv.src : inv.id })),
      children: Object.values(node.states).map((child) => child.id),
    })),
    transitions: nodes.flatMap(nodeTransitions),
  };
}

export function machinesAsJson(): { member: MachineJson; federation: MachineJson } {
  return { member: machineAsJson(memberMachine), federation: machineAsJson(federationMachine) };
}

const mermaidId = (stateId: string): string => stateId.replace(/[^A-Za-z0-9]/g, "_");

function mermaidLabel(label: string): string {
  // Mermaid ends a label at a newline and treats ":" and ";" specially.
  return label.replace(/[:;\n]/g, " ");
}

export function machineAsMermaid(machine: AnyStateMachine): string {
  const json = machineAsJson(machine);
  const lines: string[] = ["stateDiagram-v2"];
  const byId = new Map(json.states.map((s) => [s.id, s]));
  const rootId = machine.root.id;
  const anyState = `${mermaidId(rootId)}__any`;
  const rootRows = json.transitions.filter((t) => t.source === rootId && t.targets.length > 0);

  const emit = (stateId: string, indent: string): void => {
    const state = byId.get(stateId);
    if (!state) return;
    const id = mermaidId(state.id);
    lines.push(`${indent}state "${state.key}" as ${id}`);
    if (state.children.length === 0) return;
    lines.push(`${indent}state ${id} {`);
    const inner = `${indent}  `;
    if (state.initial) lines.push(`${inner}[*] --> ${mermaidId(`${state.id}.${state.initial}`)}`);
    state.children.forEach((child, i) => {
      if (state.type === "parallel" && i > 0) lines.push(`${inner}--`);
      emit(child, inner);
    });
    lines.push(`${indent}}`);
  };

  const root = byId.get(rootId);
  if (root?.type === "parallel") {
    // Mermaid draws concurrent regions only inside a composite state.
    lines.push(`  [*] --> ${mermaidId(rootId)}`);
    emit(rootId, "  ");
  } else if (root) {
    if (root.initial) lines.push(`  [*] --> ${mermaidId(`${rootId}.${root.initial}`)}`);
    root.children.forEach((child) => emit(child, "  "));
  }
  if (rootRows.length > 0) lines.push(`  state "any state" as ${anyState}`);

  for (const t of json.transitions) {
    if (t.targets.length === 0) continue;
    const from = t.source === rootId ? anyState : mermaidId(t.source);
    for (const target of t.targets) lines.push(`  ${from} --> ${mermaidId(target)} : ${mermaidLabel(t.label)}`);
  }
  return `${lines.join("\n")}\n`;
}

/** The step an entry action `setStep` records, if `action` is one. */
function stepSetBy(action: unknown): string | undefined {
  if (action === null || typeof action !== "object" || !("type" in action) || action.type !== "setStep" || !("params" in action)) return undefined;
  const params = action.params as { step?: unknown } | null;
  return typeof params?.step === "string" ? params.step : undefined;
}

/**
 * What a federation step does, in the words of the machine itself (the dry-run plans' steps): the
 * description of the state that records `step` on entry (or whose key is `step`), else of the first
 * row for the event `step` names (PAUSE for "pause") that is not a refusal; undefined when none.
 */
export function stepDescription(step: string): string | undefined {
  const nodes = allNodes(federationMachine.root);
  const state =
    nodes.find((node) => (node.entry as unknown[]).some((action) => stepSetBy(action) === step)) ??
    nodes.find((node) => node.key === step && node.id.startsWith("federation.operation."));
  if (state?.description) return state.description;
  const event = step.toUpperCase();
  const row = nodes
    .flatMap((node) => node.transitions.get(event) ?? [])
    .find((t) => !(t.actions as unknown[]).some((action) => nameOf(action) === "refuseRequest"));
  return row?.description;
}

/** Both machines as Mermaid diagrams (each with a title front matter), separated by a blank line. */
export function machinesAsMermaid(): string {
  return [memberMachine, federationMachine]
    .map((machine) => `---\ntitle: ${machine.id}\n---\n${machineAsMermaid(machine)}`)
    .join("\n");
}
