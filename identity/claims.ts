import { z } from "zod";

/**
 * NATS JWT v2 claims, with the server's own field names (nats-io/jwt v2). Schemas are loose
 * (`z.looseObject`) so fields a newer server adds survive a decode/encode round trip.
 */
const stringList = z.array(z.string());

export const permissionSchema = z.looseObject({ allow: stringList.optional(), deny: stringList.optional() });
export type Permission = z.infer<typeof permissionSchema>;

export const responsePermissionSchema = z.looseObject({ max: z.number().int(), ttl: z.number().int() });

/** Permissions and limits of a user, or of a scoped signing key's template. */
export const userPermissionLimitsSchema = z.looseObject({
  pub: permissionSchema.optional(),
  sub: permissionSchema.optional(),
  resp: responsePermissionSchema.optional(),
  src: stringList.optional(),
  subs: z.number().int().optional(),
  data: z.number().int().optional(),
  payload: z.number().int().optional(),
  bearer_token: z.boolean().optional(),
  allowed_connection_types: stringList.optional(),
});
export type UserPermissionLimits = z.infer<typeof userPermissionLimitsSchema>;

export const scopedSigningKeySchema = z.looseObject({
  kind: z.literal("user_scope"),
  key: z.string(),
  role: z.string(),
  template: userPermissionLimitsSchema,
  description: z.string().optional(),
});
export type ScopedSigningKey = z.infer<typeof scopedSigningKeySchema>;

export const accountLimitsSchema = z.looseObject({
  subs: z.number().int().optional(),
  data: z.number().int().optional(),
  payload: z.number().int().optional(),
  imports: z.number().int().optional(),
  exports: z.number().int().optional(),
  wildcards: z.boolean().optional(),
  conn: z.number().int().optional(),
  leaf: z.number().int().optional(),
  mem_storage: z.number().int().optional(),
  disk_storage: z.number().int().optional(),
  streams: z.number().int().optional(),
  consumer: z.number().int().optional(),
});

const baseClaims = {
  jti: z.string(),
  iat: z.number().int(),
  iss: z.string(),
  sub: z.string(),
  name: z.string().optional(),
  aud: z.string().optional(),
  exp: z.number().int().optional(),
  nbf: z.number().int().optional(),
};

export const operatorClaimsSchema = z.looseObject({
  ...baseClaims,
  nats: z.looseObject({
    type: z.literal("operator"),
    version: z.literal(2),
    signing_keys: stringList.optional(),
    system_account: z.string().optional(),
    strict_signing_key_usage: z.boolean().optional(),
    tags: stringList.optional(),
  }),
});
export type OperatorClaims = z.infer<typeof operatorClaimsSchema>;

export const accountClaimsSchema = z.looseObject({
  ...baseClaims,
  nats: z.looseObject({
    type: z.literal("account"),
    version: z.literal(2),
    limits: accountLimitsSchema.optional(),
    signing_keys: z.array(z.union([z.string(), scopedSigningKeySchema])).optional(),
    revocations: z.record(z.string(), z.number().int()).optional(),
    default_permissions: z.looseObject({ pub: permissionSchema.optional(), sub: permissionSchema.optional() }).optional(),
    exports: z.array(z.looseObject({ subject: z.string(), type: z.enum(["stream", "service"]) })).optional(),
    imports: z.array(z.looseObject({ subject: z.string(), account: z.string(), type: z.enum(["stream", "service"]), local_subject: z.string().optional() })).optional(),
    tags: stringList.optional(),
    description: z.string().optional(),
  }),
});
export type AccountClaims = z.infer<typeof accountClaimsSchema>;

export const userClaimsSchema = z.looseObject({
  ...baseClaims,
  nats: userPermissionLimitsSchema.extend({
    type: z.literal("user"),
    version: z.literal(2),
    issuer_account: z.string().optional(),
    tags: stringList.optional(),
  }),
});
export type UserClaims = z.infer<typeof userClaimsSchema>;

/** Unlimited account limits without JetStream (the system account). */
export const UNLIMITED_ACCOUNT_LIMITS = {
  subs: -1,
  data: -1,
  payload: -1,
  imports: -1,
  exports: -1,
  wildcards: true,
  conn: -1,
  leaf: -1,
} as const;

/** Unlimited account limits with JetStream on (an account JWT without limits refuses every connection). */
export const UNLIMITED_JETSTREAM_ACCOUNT_LIMITS = {
  ...UNLIMITED_ACCOUNT_LIMITS,
  mem_storage: -1,
  disk_storage: -1,
  streams: -1,
  consumer: -1,
} as const;
