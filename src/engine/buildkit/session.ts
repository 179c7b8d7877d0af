import * as grpc from '@grpc/grpc-js';
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import protobuf from 'protobufjs';
import { DIFF_COPY_METHOD, fileSyncService, type SyncedFolder } from './file-sync.js';

/**
 * The three services BuildKit calls back on a build's session, as the docker CLI's session serves them:
 * health (BuildKit drops a session whose health check fails), registry credentials, and build secrets.
 * Only the messages' fields we read or write are declared; protobuf skips the others.
 */
const SESSION_PROTO = `
syntax = "proto3";
package session;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse { int32 status = 1; }
message CredentialsRequest { string Host = 1; }
message CredentialsResponse { string Username = 1; string Secret = 2; }
message GetSecretRequest { string ID = 1; map<string, string> annotations = 2; }
message GetSecretResponse { bytes data = 1; }
`;
const SERVING = 1;

const types = protobuf.parse(SESSION_PROTO).root;

export interface RegistryCredentials {
  /** host[:port] of the registry these belong to; other hosts get none. */
  host: string;
  username: string;
  password: string;
}

export interface SessionOptions {
  credentials: RegistryCredentials | undefined;
  /** Secret id → value, for `RUN --mount=type=secret,id=…`. Nothing else can read them. */
  secrets: Record<string, string>;
  /**
   * The folders BuildKit loads the Dockerfile and the context from ("dockerfile", "context"), and the key under
   * which it keeps what it received for the next build of the same repository.
   */
  files?: { sharedKey: string; folders: Record<string, SyncedFolder> };
}

/** The part of dockerode's modem a session needs: an HTTP request upgraded to a raw socket. */
export interface HijackingModem {
  dial(options: object, callback: (error: Error | null, socket?: Duplex) => void): void;
}

export interface ContextSent {
  /** The files' paths in the context, in the order BuildKit asked. */
  paths: string[];
  bytes: number;
}

export interface BuildKitSession {
  /** Passed to /build as `session`: the engine's BuildKit calls back through it. */
  id: string;
  /** Why sending the context failed, if it did: said better than BuildKit's own error about it. */
  transferError(): Error | undefined;
  /** The files of the context BuildKit asked for so far, and their bytes (the Dockerfile's own load aside). */
  sent(): ContextSent;
  close(): void;
}

/**
 * Opens a session on the engine (POST /session, upgraded to HTTP/2) and serves BuildKit's calls on it.
 * dockerode's own session serves credentials only: build secrets and the health check are why this one exists.
 */
export function openBuildKitSession(modem: HijackingModem, options: SessionOptions): Promise<BuildKitSession> {
  const id = randomUUID();
  const methods = [
    '/grpc.health.v1.Health/Check',
    '/moby.filesync.v1.Auth/Credentials',
    '/moby.buildkit.secrets.v1.Secrets/GetSecret',
    ...(options.files ? [DIFF_COPY_METHOD] : []),
  ];
  const request = {
    method: 'POST',
    path: '/session',
    hijack: true,
    headers: {
      Upgrade: 'h2c',
      'X-Docker-Expose-Session-Uuid': id,
      'X-Docker-Expose-Session-Name': 'ci_service',
      ...(options.files ? { 'X-Docker-Expose-Session-Sharedkey': options.files.sharedKey } : {}),
      // One header per method, as BuildKit reads them: it asks only for what a session announces.
      'X-Docker-Expose-Session-Grpc-Method': methods,
    },
    statusCodes: { 101: true, 200: true, 500: 'server error' },
  };
  return new Promise((resolve, reject) => {
    modem.dial(request, (error, socket) => {
      if (error || !socket) {
        reject(error ?? new Error('the engine did not open a session'));
        return;
      }
      const server = new grpc.Server();
      addUnary(server, methods[0]!, 'HealthCheckRequest', 'HealthCheckResponse', () => ({ status: SERVING }));
      addUnary(server, methods[1]!, 'CredentialsRequest', 'CredentialsResponse', (asked: { Host?: string }) =>
        options.credentials && asked.Host === options.credentials.host
          ? { Username: options.credentials.username, Secret: options.credentials.password }
          : {},
      );
      addUnary(server, methods[2]!, 'GetSecretRequest', 'GetSecretResponse', (asked: { ID?: string }) => {
        const value = asked.ID !== undefined && Object.hasOwn(options.secrets, asked.ID) ? options.secrets[asked.ID] : undefined;
        if (value === undefined) throw Object.assign(new Error(`secret ${asked.ID} not found`), { code: grpc.status.NOT_FOUND });
        return { data: Buffer.from(value, 'utf8') };
      });
      let transferError: Error | undefined;
      // By path: BuildKit loads the context more than once (.dockerignore first, then what the Dockerfile uses).
      const sent = new Map<string, number>();
      if (options.files) {
        const service = fileSyncService(options.files.folders, {
          onError: (error) => (transferError ??= error),
          onFileSent: (folder, entry) => {
            if (folder === 'context') sent.set(entry.path, entry.size);
          },
        });
        server.addService(service.definition, service.handlers);
      }
      socket.on('error', () => {}); // a session ends with its build; the build reports what went wrong
      server.createConnectionInjector(grpc.ServerCredentials.createInsecure()).injectConnection(socket);
      resolve({
        id,
        transferError: () => transferError,
        sent: () => ({ paths: [...sent.keys()], bytes: [...sent.values()].reduce((sum, bytes) => sum + bytes, 0) }),
        close() {
          server.forceShutdown();
          socket.destroy();
        },
      });
    });
  });
}

function addUnary<Request, Response extends object>(
  server: grpc.Server,
  path: string,
  requestType: string,
  responseType: string,
  answer: (request: Request) => Response,
): void {
  const decode = types.lookupType(`session.${requestType}`);
  const encode = types.lookupType(`session.${responseType}`);
  const method = path.slice(path.lastIndexOf('/') + 1);
  const definition: grpc.ServiceDefinition = {
    [method]: {
      path,
      requestStream: false,
      responseStream: false,
      requestDeserialize: (bytes: Buffer) => decode.toObject(decode.decode(bytes)),
      requestSerialize: () => Buffer.alloc(0),
      responseSerialize: (message: object) => Buffer.from(encode.encode(encode.fromObject(message)).finish()),
      responseDeserialize: () => ({}),
    },
  };
  server.addService(definition, {
    [method]: (call: grpc.ServerUnaryCall<Request, Response>, callback: grpc.sendUnaryData<Response>) => {
      try {
        callback(null, answer(call.request));
      } catch (error) {
        callback(error as grpc.ServiceError);
      }
    },
  });
}
