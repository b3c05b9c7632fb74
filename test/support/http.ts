/** Local HTTP servers for tests (127.0.0.1, free ports), closed together in afterAll. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { z } from "zod";

export class LocalServers {
  readonly #servers: Server[] = [];

  /** Listens on a free loopback port; returns the port. */
  async listen(server: Server): Promise<number> {
    this.#servers.push(server);
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    return (server.address() as AddressInfo).port;
  }

  /** Serves `registry` as a `/metrics` endpoint would (any path); returns the port. */
  serveMetrics(registry: Registry): Promise<number> {
    return this.listen(
      createServer((_req, res) => {
        registry
          .metrics()
          .then((text) => res.writeHead(200, { "content-type": registry.contentType }).end(text))
          .catch(() => res.writeHead(500).end());
      }),
    );
  }

  async close(): Promise<void> {
    await Promise.all(this.#servers.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

export async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url}: HTTP ${res.status}`);
  return res.json();
}

/** The body Alertmanager 0.25 POSTs to a webhook receiver (the fields the tests read). */
export const alertmanagerWebhook = z.object({
  status: z.enum(["firing", "resolved"]),
  alerts: z.array(
    z.object({
      status: z.enum(["firing", "resolved"]),
      labels: z.record(z.string(), z.string()),
      annotations: z.record(z.string(), z.string()),
      startsAt: z.string(),
      endsAt: z.string(),
    }),
  ),
});
export type AlertmanagerWebhook = z.infer<typeof alertmanagerWebhook>;

export interface WebhookDelivery {
  atMs: number;
  body: AlertmanagerWebhook;
}

/** A webhook receiver for Alertmanager that keeps every delivery with the time it arrived. */
export interface WebhookReceiver {
  readonly port: number;
  readonly deliveries: WebhookDelivery[];
  /** Each delivered alert with its delivery time, in arrival order. */
  alerts(): Array<{ atMs: number } & AlertmanagerWebhook["alerts"][number]>;
}

export async function startWebhookReceiver(servers: LocalServers): Promise<WebhookReceiver> {
  const deliveries: WebhookDelivery[] = [];
  const port = await servers.listen(
    createServer((req, res) => {
      let data = "";
      req.on("data", (c: Buffer) => (data += c.toString()));
      req.on("end", () => {
        deliveries.push({ atMs: Date.now(), body: alertmanagerWebhook.parse(JSON.parse(data)) });
        res.writeHead(200).end();
      });
    }),
  );
  return { port, deliveries, alerts: () => deliveries.flatMap((d) => d.body.alerts.map((a) => ({ atMs: d.atMs, ...a }))) };
}
