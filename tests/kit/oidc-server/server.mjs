// The OAuth2/OIDC server the extension's tests run against: the published `oauth2-mock-server`
// (an issuer with a discovery document, a JWKS and a token endpoint; tokens signed by `jose`),
// with what it leaves out done here with Node's own crypto: the client authentication checked,
// and the grants it does not take (token exchange, RFC 8693; JWT bearer, RFC 7523 §2.1)
// answered by a front server the issuer's URL names, which hands every other request on to
// the package's. A control endpoint for the tests.
//
//   node server.mjs '<json: {"clients": {"<id>": {"secret"?, "jwk"?, "tenant"?}}, "audience"}>'
//
// Prints one JSON line when listening: {"issuer": "...", "control": "..."}.
//
// Control (JSON bodies):
//   POST /keys   {"alg", "kid"}                  adds a signing key to the JWKS
//   POST /mint   {"kid", "claims", "expiresIn"}  a token signed by the issuer's key `kid`
//   POST /ttl    {"seconds"}                     lifetime of the tokens the endpoint issues
//   POST /fail   {"status", "count"}             the next `count` token requests answer `status`
//   GET  /requests                               the token requests seen, in order

import { createServer, request as forwardRequest } from 'node:http';
import { createPublicKey, verify } from 'node:crypto';
import { OAuth2Server } from 'oauth2-mock-server';

const settings = JSON.parse(process.argv[2] ?? '{}');
const clients = settings.clients ?? {};
const requests = [];
const seenJti = new Set();
let ttl = 3600;
let failures = { status: 0, count: 0 };

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256', { kid: 'rs-1' });
await server.start(0, '127.0.0.1');
const packagePort = server.address().port;
const front = createServer((req, res) => {
  frontRequest(req, res).catch((error) => {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error));
  });
});
await new Promise((resolve) => front.listen(0, '127.0.0.1', resolve));
// Discovery, tokens' `iss` and the token endpoint all name the front.
server.issuer.url = `http://127.0.0.1:${front.address().port}`;
const issuer = server.issuer.url;
const tokenUrl = `${issuer}/token`;

function b64json(part) {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

// The client's authentication: {client, method} or {error}.
function authenticate(req) {
  const body = req.body ?? {};
  const header = req.headers.authorization ?? '';
  if (header.startsWith('Basic ')) {
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    const id = decodeURIComponent(decoded.slice(0, colon).replace(/\+/g, ' '));
    const secret = decodeURIComponent(decoded.slice(colon + 1).replace(/\+/g, ' '));
    const client = clients[id];
    if (!client || client.secret !== secret) return { error: 'wrong client id or secret (basic)' };
    return { id, method: 'client_secret_basic' };
  }
  if (body.client_secret !== undefined) {
    const client = clients[body.client_id];
    if (!client || client.secret !== body.client_secret) {
      return { error: 'wrong client id or secret (post)' };
    }
    return { id: body.client_id, method: 'client_secret_post' };
  }
  if (body.client_assertion !== undefined) {
    if (body.client_assertion_type !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
      return { error: 'wrong client_assertion_type' };
    }
    const client = clients[body.client_id];
    if (!client || !client.jwk) return { error: 'unknown client (private_key_jwt)' };
    const [h, p, s] = body.client_assertion.split('.');
    const head = b64json(h);
    const claims = b64json(p);
    const key = createPublicKey({ key: client.jwk, format: 'jwk' });
    const hashes = { RS256: 'sha256', PS256: 'sha256', ES256: 'sha256', ES384: 'sha384', EdDSA: null };
    if (!(head.alg in hashes)) return { error: `assertion algorithm ${head.alg}` };
    const options = { key };
    if (head.alg.startsWith('ES')) options.dsaEncoding = 'ieee-p1363';
    if (head.alg.startsWith('PS')) {
      options.padding = 6; // RSA_PKCS1_PSS_PADDING
      options.saltLength = 32;
    }
    const good = verify(hashes[head.alg], Buffer.from(`${h}.${p}`), options, Buffer.from(s, 'base64url'));
    if (!good) return { error: 'assertion signature does not verify' };
    const now = Math.floor(Date.now() / 1000);
    if (claims.iss !== body.client_id || claims.sub !== body.client_id) return { error: 'assertion iss/sub' };
    if (claims.aud !== tokenUrl) return { error: `assertion aud ${claims.aud}` };
    if (!(claims.exp > now) || !claims.jti) return { error: 'assertion exp/jti' };
    if (seenJti.has(claims.jti)) return { error: 'assertion jti replayed' };
    seenJti.add(claims.jti);
    if (client.kid !== undefined && head.kid !== client.kid) return { error: `assertion kid ${head.kid}` };
    return { id: body.client_id, method: 'private_key_jwt' };
  }
  return { error: 'no client authentication' };
}

server.service.on('beforeTokenSigning', (token, req) => {
  const auth = authenticate(req);
  req.otapAuth = auth;
  if (auth.id !== undefined) {
    token.payload.sub = auth.id;
    token.payload.client_id = auth.id;
    const tenant = clients[auth.id].tenant;
    if (tenant !== undefined) token.payload.tenant = tenant;
  }
  token.payload.aud = req.body.audience ?? settings.audience;
  token.payload.exp = token.payload.iat + ttl;
});

server.service.on('beforeResponse', (response, req) => {
  const auth = req.otapAuth ?? authenticate(req);
  const record = {
    grant_type: req.body.grant_type,
    method: auth.method ?? null,
    client_id: auth.id ?? null,
    scope: req.body.scope ?? null,
    audience: req.body.audience ?? null,
    resource: req.body.resource ?? null,
    error: auth.error ?? null,
  };
  requests.push(record);
  if (failures.count > 0) {
    failures.count -= 1;
    response.statusCode = failures.status;
    response.body = { error: failures.status < 500 ? 'invalid_client' : 'temporarily_unavailable', error_description: `failing on purpose (${failures.status})` };
    return;
  }
  if (auth.error !== undefined) {
    response.statusCode = 401;
    response.body = { error: 'invalid_client', error_description: auth.error };
    return;
  }
  response.body.expires_in = ttl;
});

function readBody(req) {
  return new Promise((resolve) => {
    let data = '';
    req.on('data', (chunk) => { data += chunk; });
    req.on('end', () => resolve(data));
  });
}

// The front: the grants the package does not take are answered here, the rest handed on.
async function frontRequest(req, res) {
  const raw = await readBody(req);
  if (req.method === 'POST' && req.url === '/token') {
    const body = Object.fromEntries(new URLSearchParams(raw));
    if (body.grant_type === TOKEN_EXCHANGE || body.grant_type === JWT_BEARER) {
      const { status, answer } = await grant(req, body);
      const text = JSON.stringify(answer);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
      return;
    }
  }
  const onward = forwardRequest(
    { host: '127.0.0.1', port: packagePort, method: req.method, path: req.url, headers: req.headers },
    (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    },
  );
  onward.on('error', (error) => res.writeHead(502).end(String(error)));
  onward.end(raw);
}

// A JWT signed by one of the issuer's keys, unexpired: its claims, or why not.
function verifiedByIssuer(token) {
  const parts = (token ?? '').split('.');
  if (parts.length !== 3) return { error: 'not a JWT' };
  const [h, p, s] = parts;
  const head = b64json(h);
  const claims = b64json(p);
  const jwk = server.issuer.keys.toJSON().find((key) => key.kid === head.kid);
  if (!jwk) return { error: `no issuer key ${head.kid}` };
  const hashes = { RS256: 'sha256', ES256: 'sha256', ES384: 'sha384' };
  if (!(head.alg in hashes) || head.alg !== jwk.alg) return { error: `algorithm ${head.alg}` };
  const options = { key: createPublicKey({ key: jwk, format: 'jwk' }) };
  if (head.alg.startsWith('ES')) options.dsaEncoding = 'ieee-p1363';
  if (!verify(hashes[head.alg], Buffer.from(`${h}.${p}`), options, Buffer.from(s, 'base64url'))) {
    return { error: 'signature does not verify' };
  }
  if (claims.iss !== issuer) return { error: `iss ${claims.iss}` };
  if (!(claims.exp > Math.floor(Date.now() / 1000))) return { error: 'expired' };
  return { claims };
}

// Token exchange (RFC 8693) and JWT bearer (RFC 7523 §2.1): the token presented verified, the
// client authenticated when it sent credentials (public otherwise), a token issued for the
// presented token's subject.
async function grant(req, body) {
  req.body = body;
  const credentials = req.headers.authorization !== undefined || body.client_secret !== undefined
    || body.client_assertion !== undefined;
  const auth = credentials ? authenticate(req) : { id: body.client_id, method: 'none' };
  const exchange = body.grant_type === TOKEN_EXCHANGE;
  const presented = exchange ? body.subject_token : body.assertion;
  let checked = verifiedByIssuer(presented);
  if (checked.claims !== undefined && exchange
      && body.subject_token_type !== 'urn:ietf:params:oauth:token-type:jwt') {
    checked = { error: `subject_token_type ${body.subject_token_type}` };
  }
  if (checked.claims !== undefined && !exchange && checked.claims.aud !== tokenUrl) {
    checked = { error: `assertion aud ${checked.claims.aud}` };
  }
  requests.push({
    grant_type: body.grant_type,
    method: auth.method ?? null,
    client_id: auth.id ?? null,
    scope: body.scope ?? null,
    audience: body.audience ?? null,
    resource: body.resource ?? null,
    subject_token_type: body.subject_token_type ?? null,
    requested_token_type: body.requested_token_type ?? null,
    subject: checked.claims?.sub ?? null,
    error: auth.error ?? checked.error ?? null,
  });
  if (failures.count > 0) {
    failures.count -= 1;
    return { status: failures.status, answer: { error: 'temporarily_unavailable', error_description: `failing on purpose (${failures.status})` } };
  }
  if (auth.error !== undefined) {
    return { status: 401, answer: { error: 'invalid_client', error_description: auth.error } };
  }
  if (checked.error !== undefined) {
    return { status: 400, answer: { error: 'invalid_grant', error_description: checked.error } };
  }
  const subject = checked.claims.sub;
  const token = await server.issuer.buildToken({
    kid: 'rs-1',
    expiresIn: ttl,
    scopesOrTransform: (_header, payload) => Object.assign(payload, {
      sub: subject,
      aud: body.audience ?? settings.audience,
      scope: body.scope,
      client_id: auth.id,
      tenant: checked.claims.tenant,
    }),
  });
  const answer = { access_token: token, token_type: 'Bearer', expires_in: ttl };
  if (exchange) answer.issued_token_type = 'urn:ietf:params:oauth:token-type:access_token';
  return { status: 200, answer };
}

function readJson(req) {
  return new Promise((resolve) => {
    let data = '';
    req.on('data', (chunk) => { data += chunk; });
    req.on('end', () => resolve(data ? JSON.parse(data) : {}));
  });
}

const control = createServer(async (req, res) => {
  try {
    const body = req.method === 'POST' ? await readJson(req) : {};
    let answer = {};
    if (req.url === '/keys') {
      const jwk = await server.issuer.keys.generate(body.alg, { kid: body.kid });
      answer = { kid: jwk.kid };
    } else if (req.url === '/mint') {
      const token = await server.issuer.buildToken({
        kid: body.kid,
        expiresIn: body.expiresIn ?? 3600,
        scopesOrTransform: (_header, payload) => Object.assign(payload, body.claims ?? {}),
      });
      answer = { token };
    } else if (req.url === '/ttl') {
      ttl = body.seconds;
    } else if (req.url === '/fail') {
      failures = { status: body.status, count: body.count };
    } else if (req.url === '/requests') {
      answer = requests;
    } else {
      res.writeHead(404).end();
      return;
    }
    const text = JSON.stringify(answer);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text);
  } catch (error) {
    res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error));
  }
});
control.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ issuer, control: `http://127.0.0.1:${control.address().port}` })}\n`);
});

// Ends with the test that started it.
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
