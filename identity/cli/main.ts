#!/usr/bin/env node
import { Option, type Command } from "commander";
import {
  defaultKeystoreDir,
  InvalidInputError,
  newProgram,
  out,
  outJson,
  parseDurationSeconds,
  runCli,
  say,
  writeSecretOutput,
} from "../../fabric/core/index.js";
import {
  addRole,
  createAccount,
  DEFAULT_ACCOUNT_NAME,
  identityStatus,
  initKeystore,
  issueBootstrap,
  issueUser,
  Keystore,
  peekJwt,
  PushError,
  pushAccounts,
  removeRole,
  putProvider,
  readProviders,
  removeProvider,
  revokeExternalSubject,
  revokeUsers,
  rotateRole,
  type PushReport,
} from "../index.js";
import { readDefinitionFile } from "../../fabric/cli/definition-file.js";
import { renderStatus, renderUsers } from "./render.js";

interface GlobalOptions {
  store?: string;
  server?: string[];
}

function globals(cmd: Command): GlobalOptions {
  return cmd.optsWithGlobals<GlobalOptions>();
}

function storeDir(cmd: Command): string {
  return globals(cmd).store ?? defaultKeystoreDir();
}

function open(cmd: Command): Keystore {
  return Keystore.open(storeDir(cmd));
}

function servers(cmd: Command, ks: Keystore): string[] {
  const s = globals(cmd).server;
  return s !== undefined && s.length > 0 ? s : ks.storeFile().hubUrls;
}

/** Pushes the changed accounts; an unreachable hub queues the change (reported, exit 0). */
async function pushAfterChange(cmd: Command, ks: Keystore, accounts: string[], kick?: { account: string; users: string[] }): Promise<PushReport | { queued: true; reason: string }> {
  try {
    const report = await pushAccounts(ks, { servers: servers(cmd, ks), accounts, ...(kick === undefined ? {} : { kick }) });
    for (const a of report.accounts) {
      const ok = a.servers.filter((s) => s.ok).length;
      say(`pushed account ${a.account} to ${ok}/${Math.max(report.servers.length, a.servers.length)} server(s)${a.complete ? "" : ": incomplete, still pending (fabric-id push retries)"}`);
    }
    return report;
  } catch (err) {
    if (!(err instanceof PushError)) throw err;
    say(`hub not reachable (${err.message}); the change is queued: \`fabric-id push\` sends it, and \`fabric up\` does at start`);
    return { queued: true, reason: err.message };
  }
}

const expiryOption = (): Option => new Option("--expiry <duration>", "credential lifetime, e.g. 30d, 12h, 0 for none").default("0");
const accountOption = (): Option => new Option("--account <name>", "tenant account").default(DEFAULT_ACCOUNT_NAME);

interface IssueFlags {
  account: string;
  expiry: string;
  site?: string;
  publicKey?: string;
  output?: string;
  role?: string;
  json?: boolean;
}

async function issueCommand(cmd: Command, role: string, name: string, flags: IssueFlags): Promise<void> {
  const ks = open(cmd);
  const expiresInSec = parseDurationSeconds(flags.expiry, "--expiry");
  const r = await ks.withLock(() =>
    issueUser(ks, { account: flags.account, role, name, site: flags.site, publicKey: flags.publicKey, expiresInSec }),
  );
  const summary = { account: r.record.account, role, name, site: r.record.site, publicKey: r.record.publicKey, expiresAt: r.record.expiresAt };
  if (r.creds === undefined) {
    // The holder keeps its seed: only the JWT is handed out.
    if (flags.output !== undefined && flags.output !== "-") writeSecretOutput(flags.output, `${r.jwt}\n`);
    else out(r.jwt);
    say(`issued ${role} ${name} for key ${r.record.publicKey}${flags.output !== undefined && flags.output !== "-" ? ` -> ${flags.output}` : ""}`);
    return;
  }
  const target = flags.output ?? `${role}-${name}.creds`;
  writeSecretOutput(target, r.creds);
  if (target !== "-") say(`issued ${role} ${name} (${r.record.publicKey}) -> ${target} (0600)`);
  if (flags.json === true && target !== "-") outJson({ ...summary, creds: target });
}

function addIssue(issue: Command, role: string, arg: string, withSite: boolean, description: string): void {
  const c = issue
    .command(`${role} <${arg}>`)
    .description(description)
    .addOption(accountOption())
    .addOption(expiryOption())
    .option("--public-key <key>", "the holder's own public key: only the JWT is returned")
    .option("-o, --output <file|->", "where to write the creds (or the JWT); - is stdout")
    .option("--json", "print a JSON summary");
  if (withSite) c.requiredOption("--site <site>", "the site");
  c.action(async (value: string, flags: IssueFlags, cmd: Command) => {
    if (role === "leaf") await issueCommand(cmd, role, value, { ...flags, site: value });
    else await issueCommand(cmd, role, value, flags);
  });
}

const program = newProgram("fabric-id", "the fabric's identity: operator, accounts, roles and credentials")
  .option("--store <dir>", "keystore directory (default: $FABRIC_HOME/keys or ~/.local/share/fabric/keys)")
  .option("--server <url...>", "hub URL(s) to push account changes to (default: what fabric up recorded)");

program
  .command("init")
  .description("create the operator, the system account and tenant accounts with their role keys")
  .option("--operator <name>", "operator name", "fabric")
  .option("--account <name...>", "tenant account(s)", [DEFAULT_ACCOUNT_NAME])
  .option("--json", "JSON output")
  .action((flags: { operator: string; account: string[]; json?: boolean }, cmd: Command) => {
    const r = initKeystore(storeDir(cmd), { operator: flags.operator, accounts: flags.account });
    const result = { store: r.keystore.dir, operator: r.operatorPublicKey, systemAccount: r.systemAccount, accounts: r.accounts };
    if (flags.json === true) outJson(result);
    else out(`keystore ${r.keystore.dir}\noperator ${flags.operator} ${r.operatorPublicKey}\n${r.accounts.map((a) => `account ${a.name} ${a.publicKey}`).join("\n")}`);
  });

const issue = program.command("issue").description("issue a credential");
addIssue(issue, "device", "name", true, "a device: its own telemetry/events, its own commands");
addIssue(issue, "leaf", "site", false, "a site's leaf node");
addIssue(issue, "service", "name", false, "a backend service");
addIssue(issue, "mqtt", "name", true, "a legacy MQTT device (bearer JWT, MQTT connections only)");
issue
  .command("user <name>")
  .description("a user of any role, custom roles included")
  .requiredOption("--role <role>", "the role")
  .option("--site <site>", "the site (roles scoped to a site need it)")
  .addOption(accountOption())
  .addOption(expiryOption())
  .option("--public-key <key>", "the holder's own public key: only the JWT is returned")
  .option("-o, --output <file|->", "where to write the creds (or the JWT); - is stdout")
  .option("--json", "print a JSON summary")
  .action(async (name: string, flags: IssueFlags & { role: string }, cmd: Command) => issueCommand(cmd, flags.role, name, flags));
issue
  .command("bootstrap")
  .description("a site's bootstrap credential and one-time provisioning tokens")
  .requiredOption("--site <site>", "the site")
  .addOption(accountOption())
  .option("--count <n>", "how many tokens", "1")
  .option("--ttl <duration>", "how long the credential and tokens stay valid", "24h")
  .option("-o, --output <file|->", "where to write the bootstrap creds", undefined)
  .option("--json", "JSON output (tokens and creds path)")
  .action(async (flags: { site: string; account: string; count: string; ttl: string; output?: string; json?: boolean }, cmd: Command) => {
    const ks = open(cmd);
    const count = Number(flags.count);
    if (!Number.isInteger(count)) throw new InvalidInputError(`--count ${JSON.stringify(flags.count)} is not a whole number`);
    const ttl = parseDurationSeconds(flags.ttl, "--ttl");
    const r = await ks.withLock(() => issueBootstrap(ks, flags.account, flags.site, count, ttl));
    const target = flags.output ?? `bootstrap-${flags.site}.creds`;
    if (target === "-") throw new InvalidInputError("-o - is not available for bootstrap: stdout carries the tokens");
    writeSecretOutput(target, r.creds);
    say(`bootstrap credential for site ${flags.site} -> ${target} (0600), ${count} token(s) valid until ${new Date(r.expiresAt * 1000).toISOString()}`);
    if (flags.json === true) outJson({ site: flags.site, creds: target, tokens: r.tokens, expiresAt: r.expiresAt });
    else out(r.tokens.join("\n"));
  });

const revoke = program.command("revoke").description("revoke credentials (pushed to every server at once)");
for (const role of ["device", "leaf", "service", "mqtt", "user"]) {
  revoke
    .command(`${role} <nameOrKey>`)
    .description(role === "user" ? "revoke a user of any role by name or public key" : `revoke a ${role} by name or public key (every key issued under that name)`)
    .addOption(accountOption())
    .option("--json", "JSON output")
    .action(async (nameOrKey: string, flags: { account: string; json?: boolean }, cmd: Command) => {
      const ks = open(cmd);
      const r = await ks.withLock(() => revokeUsers(ks, flags.account, nameOrKey, role === "user" ? undefined : role));
      const keys = r.revoked.length > 0 ? r.revoked.map((u) => u.publicKey) : [nameOrKey];
      say(`revoked ${keys.length} key(s) in account ${flags.account}`);
      const push = await pushAfterChange(cmd, ks, [flags.account], { account: flags.account, users: keys });
      if (flags.json === true) outJson({ revoked: keys, push });
      else out(keys.join("\n"));
    });
}
revoke
  .command("role <role>")
  .description("rotate a role's signing key: every credential it issued stops working")
  .addOption(accountOption())
  .option("--json", "JSON output")
  .action(async (role: string, flags: { account: string; json?: boolean }, cmd: Command) => {
    const ks = open(cmd);
    const r = await ks.withLock(() => rotateRole(ks, flags.account, role));
    say(`rotated role ${role}: ${r.invalidated} credential(s) stop working; new key ${r.newKey}`);
    const push = await pushAfterChange(cmd, ks, [flags.account]);
    if (flags.json === true) outJson({ role, oldKey: r.oldKey, newKey: r.newKey, invalidated: r.invalidated, push });
    else out(String(r.invalidated));
  });

revoke
  .command("external <subject>")
  .description("an identity provider's subject: its tokens are exchanged no more, and every credential issued for it is revoked")
  .option("--provider <name>", "the identity provider (fabric-id idp ls); needed when there are several")
  .option("--json", "JSON output")
  .action(async (subject: string, flags: { provider?: string; json?: boolean }, cmd: Command) => {
    const ks = open(cmd);
    const r = await ks.withLock(() => revokeExternalSubject(ks, flags.provider, subject));
    say(`subject ${JSON.stringify(subject)} of ${r.provider} revoked: no more exchanges; ${r.keys.length} credential(s) revoked in account ${r.account}`);
    const push = await pushAfterChange(cmd, ks, [r.account], { account: r.account, users: r.keys });
    if (flags.json === true) outJson({ provider: r.provider, subject, revoked: r.keys, push });
    else out(r.keys.join("\n"));
  });

const idp = program.command("idp").description("identity providers whose tokens are exchanged for fabric credentials (OAuth2/OIDC)");
idp
  .command("add <file>")
  .description("add or replace a provider from a YAML or JSON file: name, issuer, jwksUri, audiences, algorithms, maxTtlSec, rules")
  .action(async (file: string, _flags: unknown, cmd: Command) => {
    const ks = open(cmd);
    const p = await ks.withLock(() => putProvider(ks, readDefinitionFile(file)));
    say(`identity provider ${p.name} (${p.issuer}): ${p.rules.length} rule(s); the identity service uses it from its next exchange`);
  });
idp
  .command("ls")
  .description("the providers")
  .option("--json", "JSON output")
  .action((flags: { json?: boolean }, cmd: Command) => {
    const providers = readProviders(open(cmd));
    if (flags.json === true) outJson(providers);
    else out(providers.map((p) => `${p.name}  ${p.issuer}  audiences ${p.audiences.join(",")}  ${p.rules.map((r) => r.role).join(",")}`).join("\n") || "no identity providers");
  });
idp
  .command("rm <name>")
  .description("remove a provider: its tokens are exchanged no more (credentials issued stay valid until they expire; revoke them with revoke external)")
  .action(async (name: string, _flags: unknown, cmd: Command) => {
    const ks = open(cmd);
    if (await ks.withLock(() => removeProvider(ks, name))) say(`identity provider ${name} removed`);
    else {
      say(`no identity provider ${name}`);
      process.exitCode = 1;
    }
  });

const role = program.command("role").description("roles (scoped signing keys with permission templates)");
role
  .command("add <name>")
  .description("add a custom role; subjects may use {{name()}} and {{tag(site)}}")
  .addOption(accountOption())
  .option("--pub <subject...>", "subjects it may publish to")
  .option("--sub <subject...>", "subjects it may subscribe to")
  .option("--site-scoped", "its users need --site", false)
  .action(async (name: string, flags: { account: string; pub?: string[]; sub?: string[]; siteScoped: boolean }, cmd: Command) => {
    const ks = open(cmd);
    await ks.withLock(() => addRole(ks, flags.account, { name, pub: flags.pub, sub: flags.sub, siteScoped: flags.siteScoped }));
    say(`added role ${name} to account ${flags.account}`);
    await pushAfterChange(cmd, ks, [flags.account]);
  });
role
  .command("rm <name>")
  .description("remove a custom role: its users are disconnected")
  .addOption(accountOption())
  .action(async (name: string, flags: { account: string }, cmd: Command) => {
    const ks = open(cmd);
    await ks.withLock(() => removeRole(ks, flags.account, name));
    say(`removed role ${name} from account ${flags.account}`);
    await pushAfterChange(cmd, ks, [flags.account]);
  });

program
  .command("account")
  .description("tenant accounts")
  .command("add <name>")
  .description("add a tenant account with the built-in roles")
  .action(async (name: string, _flags: unknown, cmd: Command) => {
    const ks = open(cmd);
    const acc = await ks.withLock(() => createAccount(ks, name));
    out(acc.publicKey);
    await pushAfterChange(cmd, ks, [name]);
  });

program
  .command("ls")
  .description("list accounts, roles and issued credentials")
  .option("--account <name>", "only this account")
  .option("--json", "JSON output")
  .action((flags: { account?: string; json?: boolean }, cmd: Command) => {
    const ks = open(cmd);
    const accounts = flags.account === undefined ? ks.accounts() : [ks.account(flags.account)];
    const data = accounts.map((a) => ({
      name: a.name,
      publicKey: a.publicKey,
      system: a.system,
      roles: Object.fromEntries(Object.entries(a.roles).map(([k, v]) => [k, v.key])),
      users: ks.users(a.name).map(({ jwt: _jwt, ...u }) => u),
    }));
    if (flags.json === true) outJson({ operator: ks.storeFile().operator, accounts: data });
    else out(renderUsers(data));
  });

program
  .command("describe <kind> [name]")
  .description("show an operator, account, role or user (device, leaf, service, mqtt, user) as decoded claims")
  .addOption(accountOption())
  .option("--json", "JSON output")
  .option("--raw", "print the JWT itself")
  .action((kind: string, name: string | undefined, flags: { account: string; json?: boolean; raw?: boolean }, cmd: Command) => {
    const ks = open(cmd);
    let jwt: string | undefined;
    let extra: Record<string, unknown> = {};
    if (kind === "operator") jwt = ks.operatorJwt();
    else if (kind === "account") jwt = ks.accountJwt(name ?? flags.account);
    else if (kind === "role") {
      const acc = ks.account(flags.account);
      const r = name === undefined ? undefined : acc.roles[name];
      if (r === undefined) throw new InvalidInputError(`account ${flags.account} has no role ${JSON.stringify(name)} (roles: ${Object.keys(acc.roles).join(", ")})`);
      outJson({ role: name, ...r });
      return;
    } else {
      if (name === undefined) throw new InvalidInputError(`describe ${kind} needs a name or public key`);
      const roleFilter = kind === "user" ? undefined : kind;
      const matches = ks.users(flags.account).filter((u) => (u.name === name || u.publicKey === name) && (roleFilter === undefined || u.role === roleFilter));
      if (matches.length === 0) throw new InvalidInputError(`no ${kind} ${JSON.stringify(name)} in account ${flags.account}`);
      const latest = matches.sort((a, b) => b.issuedAt - a.issuedAt)[0];
      jwt = latest?.jwt;
      extra = { keys: matches.length, revoked: latest?.revokedAt !== undefined };
    }
    if (jwt === undefined) throw new InvalidInputError(`unknown kind ${JSON.stringify(kind)}: use operator, account, role, device, leaf, service, mqtt or user`);
    if (flags.raw === true) out(jwt);
    else outJson({ ...extra, claims: peekJwt(jwt) });
  });

program
  .command("push")
  .description("push account JWTs to every server of the hub (what a change queued while it was down)")
  .option("--account <name...>", "only these accounts")
  .option("--json", "JSON output")
  .action(async (flags: { account?: string[]; json?: boolean }, cmd: Command) => {
    const ks = open(cmd);
    const report = await pushAccounts(ks, { servers: servers(cmd, ks), ...(flags.account === undefined ? {} : { accounts: flags.account }) });
    if (flags.json === true) outJson(report);
    else for (const a of report.accounts) out(`${a.account}\tiat ${a.iat}\t${a.servers.filter((s) => s.ok).length}/${report.servers.length} servers${a.complete ? "" : "\tINCOMPLETE"}`);
    if (report.accounts.some((a) => !a.complete)) process.exitCode = 1;
  });

program
  .command("status")
  .description("expiries coming up, revocation-list headroom, and the account JWT each server holds")
  .option("--horizon <duration>", "report credentials expiring within", "7d")
  .option("--json", "JSON output")
  .action(async (flags: { horizon: string; json?: boolean }, cmd: Command) => {
    const ks = open(cmd);
    const status = await identityStatus(ks, { servers: servers(cmd, ks), horizonSec: parseDurationSeconds(flags.horizon, "--horizon") });
    if (flags.json === true) outJson(status);
    else out(renderStatus(status));
  });

await runCli(program);
