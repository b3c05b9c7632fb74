/**
 * A network link between two lab parts: a TCP relay on 127.0.0.1 in front of one server (NATS, a
 * region's Kubernetes API), so that the lab and the chaos suite can give one client its own path
 * and then partition it or slow it down, as a link between regions would be.
 *
 * A partition behaves like dropped packets, not like a refused connection: bytes already on an
 * open connection wait (TCP would retransmit them) and flow again when the link heals; a new
 * connection is accepted but reaches the server only after the heal. Latency delays every chunk
 * by the same amount, in order. Rule 6: loopback only, a free port, closed with the lab.
 */
import { connect, createServer, type Server, type Socket } from "node:net";

export interface Link {
  /** The port clients connect to (on 127.0.0.1). */
  readonly port: number;
  readonly url: string;
  readonly partitioned: boolean;
  /** Holds every byte from now on, both ways, until heal(). */
  partition(): void;
  heal(): void;
  /** One-way delay added to every chunk, both directions (0: none). */
  setLatency(ms: number): void;
  /** Closes every connection through the link and stops listening. */
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  server: Socket | undefined;
  /** Chunks waiting for the heal or for their delay, per direction. */
  up: Buffer[];
  down: Buffer[];
  /** When the last delayed chunk of each direction is due: a later chunk is never due sooner (no reordering when the latency drops). */
  due: { up: number; down: number };
}

/** Starts a link to `target` (host:port). `scheme` only shapes `url` (e.g. "nats", "https"). */
export async function startLink(target: { host: string; port: number }, scheme = "tcp"): Promise<Link> {
  const pairs = new Set<Pair>();
  let partitioned = false;
  let latencyMs = 0;

  const forward = (pair: Pair, dir: "up" | "down") => {
    const queue = dir === "up" ? pair.up : pair.down;
    const to = dir === "up" ? pair.server : pair.client;
    if (partitioned || !to) return;
    while (queue.length > 0) {
      const chunk = queue.shift() as Buffer;
      const now = Date.now();
      const due = Math.max(now + latencyMs, pair.due[dir]);
      pair.due[dir] = due;
      if (due > now) setTimeout(() => to.destroyed || to.write(chunk), due - now);
      else to.write(chunk);
    }
  };

  const dial = (pair: Pair) => {
    const server = connect({ host: target.host, port: target.port });
    pair.server = server;
    server.on("data", (chunk: Buffer) => {
      pair.down.push(chunk);
      forward(pair, "down");
    });
    const end = () => {
      pair.client.destroy();
      pairs.delete(pair);
    };
    server.on("error", end);
    server.on("close", end);
    server.on("connect", () => forward(pair, "up"));
  };

  const srv: Server = createServer((client) => {
    const pair: Pair = { client, server: undefined, up: [], down: [], due: { up: 0, down: 0 } };
    pairs.add(pair);
    client.on("data", (chunk: Buffer) => {
      pair.up.push(chunk);
      forward(pair, "up");
    });
    const end = () => {
      pair.server?.destroy();
      pairs.delete(pair);
    };
    client.on("error", end);
    client.on("close", end);
    if (!partitioned) dial(pair);
  });
  await new Promise<void>((resolve, reject) => {
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", resolve);
  });
  const addr = srv.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;

  return {
    port,
    url: `${scheme}://127.0.0.1:${port}`,
    get partitioned() {
      return partitioned;
    },
    partition: () => {
      partitioned = true;
    },
    heal: () => {
      partitioned = false;
      for (const pair of pairs) {
        if (!pair.server) dial(pair);
        else {
          forward(pair, "up");
          forward(pair, "down");
        }
      }
    },
    setLatency: (ms) => {
      latencyMs = Math.max(0, ms);
    },
    close: async () => {
      for (const pair of pairs) {
        pair.client.destroy();
        pair.server?.destroy();
      }
      pairs.clear();
      await new Promise<void>((resolve) => srv.close(() => resolve()));
    },
  };
}
