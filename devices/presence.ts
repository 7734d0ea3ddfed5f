import { z } from "zod";

/**
 * Presence events of devices: nats-server's own (`$SYS.ACCOUNT.<account>.CONNECT` / `.DISCONNECT`, for NATS and
 * nats-server MQTT clients) and the MQTT ingress's (`$FABRIC.devices.presence.<site>.<name>`, for its clients).
 */
export const INGRESS_PRESENCE_SUBJECT = (site: string | undefined, name: string): string => `$FABRIC.devices.presence.${site ?? "_"}.${name}`;
export const INGRESS_PRESENCE_ALL = "$FABRIC.devices.presence.*.*";

export const ingressPresenceSchema = z.strictObject({
  event: z.enum(["connect", "disconnect"]),
  name: z.string(),
  site: z.string().optional(),
  role: z.string().optional(),
  publicKey: z.string(),
  tags: z.array(z.string()).default([]),
  /** `mqtt-3.1`, `mqtt-3.1.1`, `mqtt-5.0`. */
  protocol: z.string(),
  at: z.number(),
});
export type IngressPresence = z.infer<typeof ingressPresenceSchema>;

/** nats-server's client connect/disconnect advisory (the fields the registry reads). */
export const serverPresenceSchema = z.looseObject({
  type: z.string(),
  timestamp: z.string().optional(),
  client: z.looseObject({
    acc: z.string().optional(),
    user: z.string().optional(),
    /** The user's JWT (its `name` is the device's name; `name_tag` is the account's). */
    jwt: z.string().optional(),
    tags: z.array(z.string()).nullish(),
    kind: z.string().optional(),
    client_type: z.string().optional(),
  }),
});

export const CONNECT_ADVISORY = "io.nats.server.advisory.v1.client_connect";
export const DISCONNECT_ADVISORY = "io.nats.server.advisory.v1.client_disconnect";

/** The roles whose users are devices (their connections drive the registry's live state). */
export const DEVICE_ROLES: ReadonlySet<string> = new Set(["device", "mqtt"]);

/** `role:<r>` and `site:<s>` of a credential's tags. */
export function roleAndSite(tags: readonly string[]): { role?: string; site?: string } {
  const role = tags.find((t) => t.startsWith("role:"))?.slice(5);
  const site = tags.find((t) => t.startsWith("site:"))?.slice(5);
  return { ...(role === undefined ? {} : { role }), ...(site === undefined ? {} : { site }) };
}
