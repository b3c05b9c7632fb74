export { startApiServer, DEFAULT_BODY_LIMIT, type ApiServer, type ApiServerOptions, type ApiTlsOptions } from "./server.js";
export { authenticate, hashToken, loadTokenFile, parseTokenFile, tokenLine, type Role, type TokenEntry } from "./auth.js";
export { buildOpenApiDocument } from "./openapi.js";
export { ROUTES } from "./routes.js";
