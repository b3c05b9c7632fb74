/**
 * Reading the API's Server-Sent Events (GET /v1/operations/{id}/events): the complete events at
 * the front of a buffer, and the rest to keep for the next chunk. Pure, for the CLI and the
 * status page alike.
 */
export interface SseEvent {
  event: string | undefined;
  data: string;
}

export function takeSseEvents(buffer: string): { events: SseEvent[]; rest: string } {
  const events: SseEvent[] = [];
  let rest = buffer;
  let cut: number;
  while ((cut = rest.indexOf("\n\n")) >= 0) {
    const block = rest.slice(0, cut);
    rest = rest.slice(cut + 2);
    const event = /^event: (.*)$/m.exec(block)?.[1];
    const data = block
      .split("\n")
      .filter((l) => l.startsWith("data: "))
      .map((l) => l.slice(6))
      .join("\n");
    events.push({ event, data });
  }
  return { events, rest };
}
