/**
 * The servers the MongoDB applier tests run against, behind one shape: the
 * fake (always), or a real mongod/mongos given by an admin URL
 * (`SIKKER_TEST_MONGODB_URL=mongodb://root:…@host:27017/?authSource=admin`).
 * Either way users and roles are made with real commands through the test's
 * own root client, uniquely named, and dropped in teardown.
 */
import { randomBytes } from 'node:crypto';
import { MongoClient } from 'mongodb';
import type { Test } from 'tap';
import type { TargetTls } from '../../../agent/appliers/target.js';
import type { RoleName } from './roles.js';
import { start, type FakeMongodb } from './server.js';

export interface MongodbTestServer {
  label: string;
  host: string;
  port: number;
  /** An admin URL for `createApplier(target, { url })`: a root login. */
  adminUrl: string;
  /** The admin login's name and authentication database. */
  adminUser: { user: string; db: string };
  /** TLS towards the server, for targets. */
  tls: TargetTls;
  /** The test's own root connection. */
  client: MongoClient;
  /** The fake itself, or undefined on a real server. */
  fake: FakeMongodb | undefined;
  uniqueName(label: string): string;
  /** A user of `db` logging in with `password`, with `roles`; dropped in t.teardown. Returns its name (`name`, or a unique one). */
  createUser(t: Test, db: string, label: string, password: string, roles?: RoleName[], name?: string): Promise<string>;
  /** A client logged in as `user` of `db` (the test closes it). */
  connectAs(user: string, password: string, db: string): Promise<MongoClient>;
  /** A custom role of `db` granting `changeOwnPassword` there (self-rotation needs it); made once, dropped on close. */
  changeOwnPasswordRole(db: string): Promise<RoleName>;
  close(): Promise<void>;
}

const prefix = `sk_mg_${randomBytes(3).toString('hex')}`;
let counter = 0;
const uniqueName = (label: string): string => `${prefix}_${label}_${counter++}`;

function wrap(label: string, adminUrl: string, adminUser: { user: string; db: string }, fake: FakeMongodb | undefined, client: MongoClient): MongodbTestServer {
  const url = new URL(adminUrl);
  const tls = url.searchParams.get('tls') === 'true' || url.searchParams.get('ssl') === 'true';
  const roles = new Map<string, Promise<RoleName>>();
  return {
    label,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port || 27017),
    adminUrl,
    adminUser,
    tls: { mode: tls ? 'require' : 'disable' },
    client,
    fake,
    uniqueName,
    async createUser(t, db, userLabel, password, userRoles = [], name = uniqueName(userLabel)) {
      await client.db(db).command({ createUser: name, pwd: password, roles: userRoles, mechanisms: ['SCRAM-SHA-256'] });
      t.teardown(() => client.db(db).command({ dropUser: name }));
      return name;
    },
    async connectAs(user, password, db) {
      const as = new MongoClient(`mongodb://${url.host}/`, {
        auth: { username: user, password }, authSource: db, directConnection: true, serverSelectionTimeoutMS: 5000,
        ...(tls ? { tls: true, tlsAllowInvalidCertificates: true } : {}),
      });
      await as.connect();
      return as;
    },
    changeOwnPasswordRole(db) {
      let role = roles.get(db);
      if (role === undefined) {
        const name = uniqueName('own_password');
        role = client.db(db)
          .command({ createRole: name, privileges: [{ resource: { db, collection: '' }, actions: ['changeOwnPassword'] }], roles: [] })
          .then(() => ({ role: name, db }));
        roles.set(db, role);
      }
      return role;
    },
    async close() {
      for (const [db, role] of roles) await client.db(db).command({ dropRole: (await role).role });
      await client.close();
      await fake?.stop();
    },
  };
}

/** The fake, with a root login in `admin`. */
export async function fakeServer(): Promise<MongodbTestServer> {
  const fake = await start();
  const root = { user: 'sk_root', db: 'admin' };
  const password = `root-${randomBytes(12).toString('base64url')}`;
  fake.addUser(root.db, root.user, password, ['root']);
  const adminUrl = `mongodb://${root.user}:${encodeURIComponent(password)}@127.0.0.1:${fake.port}/?authSource=admin`;
  const client = new MongoClient(adminUrl, { directConnection: true, serverSelectionTimeoutMS: 5000 });
  await client.connect();
  return wrap('fake', adminUrl, root, fake, client);
}

/** A real server; the URL's login must be able to manage users and roles and end sessions (root). */
export async function realServer(adminUrl: string): Promise<MongodbTestServer> {
  const url = new URL(adminUrl);
  const db = url.searchParams.get('authSource') || decodeURIComponent(url.pathname.replace(/^\//, '')) || 'admin';
  const client = new MongoClient(adminUrl, { directConnection: true, serverSelectionTimeoutMS: 10_000 });
  await client.connect();
  return wrap('real', adminUrl, { user: decodeURIComponent(url.username), db }, undefined, client);
}
