import { execFileSync } from "node:child_process";
import { join } from "node:path";

export interface TestCerts {
  ca: string;
  caKey: string;
  /** A server certificate for 127.0.0.1. */
  server: { cert: string; key: string };
  /** A client certificate (clientAuth). */
  client: { cert: string; key: string };
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate it signed, made with openssl for this run. */
export function makeTestCerts(dir: string): TestCerts {
  const ssl = (...args: string[]): void => void execFileSync("openssl", args, { stdio: "ignore", cwd: dir });
  ssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=fabric test CA");
  for (const [name, ext] of [
    ["server", "subjectAltName=IP:127.0.0.1"],
    ["client", "extendedKeyUsage=clientAuth"],
  ] as const) {
    ssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
    execFileSync("bash", ["-c", `openssl x509 -req -in ${name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out ${name}.pem -days 1 -extfile <(printf '${ext}')`], { stdio: "ignore", cwd: dir });
  }
  const pair = (name: string) => ({ cert: join(dir, `${name}.pem`), key: join(dir, `${name}.key`) });
  return { ca: join(dir, "ca.pem"), caKey: join(dir, "ca.key"), server: pair("server"), client: pair("client") };
}
