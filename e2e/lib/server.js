// Starts and stops the real `courier` binary on a fresh data directory.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const COURIER_BIN = path.resolve(path.join(here, '..'), process.env.COURIER_BIN || '../target/debug/courier');

export class CourierServer {
  // `args`: extra `courier serve` flags, e.g. ['--signup', 'open'].
  constructor({ args = [] } = {}) {
    this.args = args;
    this.dataDir = mkdtempSync(path.join(tmpdir(), 'courier-e2e-'));
    this.port = 0;
    this.scheme = 'http';
    this.child = null;
    this.log = [];
  }

  get url() {
    return `${this.scheme}://127.0.0.1:${this.port}`;
  }

  // Resolves once the server prints "courier listening on http://127.0.0.1:PORT".
  start() {
    const args = ['serve', '--listen', `127.0.0.1:${this.port}`, '--data-dir', this.dataDir, '--dev-login-per-minute', '0', ...this.args];
    const child = spawn(COURIER_BIN, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
    });
    this.child = child;
    const keep = (chunk) => {
      this.log.push(chunk.toString());
      if (this.log.length > 400) this.log.shift();
    };
    child.stderr.on('data', keep);
    return new Promise((resolve, reject) => {
      let buffered = '';
      const timer = setTimeout(() => fail(new Error('courier did not report its address within 20 s')), 20_000);
      const fail = (err) => {
        clearTimeout(timer);
        reject(new Error(`${err.message}\n--- server output ---\n${this.log.join('')}`));
      };
      child.once('error', fail);
      child.once('exit', (code, signal) => fail(new Error(`courier exited early (code ${code}, signal ${signal})`)));
      child.stdout.on('data', (chunk) => {
        keep(chunk);
        buffered += chunk.toString();
        const match = buffered.match(/courier listening on (https?):\/\/127\.0\.0\.1:(\d+)/);
        if (match && this.child === child && !this.ready) {
          this.ready = true;
          clearTimeout(timer);
          child.removeAllListeners('exit');
          this.scheme = match[1];
          this.port = Number(match[2]);
          resolve(this);
        }
      });
    });
  }

  async stop() {
    const child = this.child;
    this.child = null;
    this.ready = false;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }

  async restart() {
    await this.stop();
    return this.start();
  }

  async dispose() {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
