import { z } from "zod";

/** A Homie v4 device attribute (`homie/<device>/$state`, …) seen by an ingress, for the registry. */
export const HOMIE_ATTRIBUTES = (site: string | undefined, device: string): string => `$FABRIC.devices.homie.${site ?? "_"}.${device}`;
export const HOMIE_ATTRIBUTES_ALL = "$FABRIC.devices.homie.*.*";

export const homieAttributeSchema = z.strictObject({
  device: z.string(),
  site: z.string().optional(),
  attribute: z.string().regex(/^\$[a-z]+$/),
  value: z.string().max(1_024),
  at: z.number(),
});
export type HomieAttribute = z.infer<typeof homieAttributeSchema>;
