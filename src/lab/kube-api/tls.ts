/**
 * A self-signed CA and a server certificate for 127.0.0.1/localhost, made with `openssl` (EC
 * P-256: fast to generate, accepted by Node and by kubectl's Go TLS stack). Files already in the
 * directory are reused, so a restarted lab keeps its kubeconfig valid. The certificate serves both
 * ends (serverAuth and clientAuth): the lab's NATS servers present it to each other on their routes.
 */
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { wrapError } from "../../errors.js";
import { run } from "../proc.js";

export interface TlsFiles {
  caFile: string;
  certFile: string;
  keyFile: string;
}

export async function ensureCertificates(dir: string, region: string, host: string): Promise<TlsFiles> {
  const files: TlsFiles = { caFile: join(dir, "ca.crt"), certFile: join(dir, "server.crt"), keyFile: join(dir, "server.key") };
  if (existsSync(files.caFile) && existsSync(files.certFile) && existsSync(files.keyFile)) return files;
  try {
    await mkdir(dir, { recursive: true });
    const caKey = join(dir, "ca.key");
    const csr = join(dir, "server.csr");
    const ext = join(dir, "server.ext");
    const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    await run("openssl", [
      "req", "-x509", ...ec, "-keyout", caKey, "-out", files.caFile, "-days", "3650",
      "-subj", `/CN=pgfed-lab-ca-${region}`,
      "-addext", "basicConstraints=critical,CA:TRUE",
      "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    await run("openssl", ["req", ...ec, "-keyout", files.keyFile, "-out", csr, "-subj", `/CN=kube-apiserver-${region}`]);
    const ipHost = /^\d+\.\d+\.\d+\.\d+$/.test(host);
    const sans = ["IP:127.0.0.1", "DNS:localhost", ...(ipHost && host !== "127.0.0.1" ? [`IP:${host}`] : []), ...(!ipHost && host !== "localhost" ? [`DNS:${host}`] : [])];
    await writeFile(
      ext,
      [`subjectAltName=${sans.join(",")}`, "basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment", "extendedKeyUsage=serverAuth,clientAuth", ""].join("\n"),
    );
    await run("openssl", ["x509", "-req", "-in", csr, "-CA", files.caFile, "-CAkey", caKey, "-CAcreateserial", "-out", files.certFile, "-days", "3650", "-extfile", ext]);
    await rm(csr, { force: true });
    await rm(ext, { force: true });
    return files;
  } catch (e) {
    throw wrapError("lab.kube_api_tls", `while creating the TLS certificates of region ${region} in ${dir}`, e);
  }
}
