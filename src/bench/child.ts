/**
 * A benchmark worker process: each model is measured in its own child (`padserve bench <family> --worker DIR`)
 * so that models don't share an allocator, arena or page cache accounting. Messages are a request/reply
 * protocol over IPC; an `error` message or the child's exit rejects the pending request.
 */
import { fork, type ChildProcess } from 'node:child_process';

export class BenchChild<ToChild extends { type: string }, FromChild extends { type: string }> {
  private readonly child: ChildProcess;
  private pending: ((m: FromChild | { type: 'error'; message: string }) => void) | null = null;
  private readonly queue: FromChild[] = [];

  constructor(cli: string, args: readonly string[], label: string) {
    this.child = fork(cli, [...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: FromChild) =>
      this.pending ? (this.pending(m), (this.pending = null)) : this.queue.push(m),
    );
    this.child.on('exit', (code) =>
      this.pending?.({ type: 'error', message: `worker for ${label} exited with code ${code}` }),
    );
  }

  private next(): Promise<FromChild | { type: 'error'; message: string }> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((res) => (this.pending = res));
  }

  /** Sends `msg` (or nothing, to wait for an unsolicited reply) and waits for a reply of type `want`. */
  async request<T extends FromChild['type']>(
    msg: ToChild | null,
    want: T,
  ): Promise<Extract<FromChild, { type: T }>> {
    if (msg) this.child.send(msg);
    const reply = await this.next();
    if (reply.type === 'error') throw new Error((reply as { message: string }).message);
    if (reply.type !== want) throw new Error(`worker replied ${reply.type}, expected ${want}`);
    return reply as Extract<FromChild, { type: T }>;
  }

  stop(): void {
    if (this.child.connected) this.child.send({ type: 'exit' });
  }
}
