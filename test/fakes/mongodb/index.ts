/**
 * A fake MongoDB server for tests of the MongoDB applier with the real driver
 * (see server.ts). Usage:
 *
 *   const mongo = await start();
 *   mongo.addUser('admin', 'root', 'secret', ['root']);
 *   // mongodb://root:secret@127.0.0.1:<mongo.port>/?authSource=admin
 *   await mongo.stop();
 */
export { start, type FakeMongodb, type FakeMongodbOptions } from './server.js';
export type { Privilege, RoleName } from './roles.js';
