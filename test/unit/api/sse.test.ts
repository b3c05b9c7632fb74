import { describe, expect, it } from "vitest";
import { takeSseEvents } from "../../../src/api/sse.js";

describe("takeSseEvents", () => {
  it("returns complete events in order and keeps a partial one for the next chunk", () => {
    const stream = 'event: operation\ndata: {"id":"a"}\n\nevent: operation\ndata: {"id":\ndata: "b"}\n\n: keep-alive\n\nevent: end\ndata: {}\n\n';
    // Fed in arbitrary pieces, the events come out the same.
    for (const size of [1, 3, 7, stream.length]) {
      let buf = "";
      const seen: { event: string | undefined; data: string }[] = [];
      for (let i = 0; i < stream.length; i += size) {
        const { events, rest } = takeSseEvents(buf + stream.slice(i, i + size));
        buf = rest;
        seen.push(...events);
      }
      expect(buf).toBe("");
      expect(seen).toEqual([
        { event: "operation", data: '{"id":"a"}' },
        { event: "operation", data: '{"id":\n"b"}' },
        { event: undefined, data: "" },
        { event: "end", data: "{}" },
      ]);
    }
  });
});
