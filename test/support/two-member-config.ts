/** The smallest valid config document: one federation of two members in two regions, over one NATS URL. */
export function twoMemberConfigDocument(federation: string, natsUrl: string): Record<string, unknown> {
  return {
    federations: [
      {
        name: federation,
        members: [
          { name: "pg-eu", region: "eu-west", namespace: "db", cluster: "pg-eu", postgres: { host: "127.0.0.1", port: 1 } },
          { name: "pg-us", region: "us-east", namespace: "db", cluster: "pg-us", postgres: { host: "127.0.0.1", port: 2 } },
        ],
      },
    ],
    regions: [{ name: "eu-west" }, { name: "us-east" }],
    bus: { servers: [natsUrl] },
  };
}
