/**
 * Which open connections have a request in progress. Draining closes the others at once: Node's
 * closeIdleConnections skips a connection that has not sent a request yet (a client's preconnect,
 * a fetch aborted before sending), which would otherwise hold server.close() until headersTimeout.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

export class ConnectionTracker {
  /** Open sockets → requests received on them and not yet answered. */
  private readonly open = new Map<Socket, number>();

  constructor(server: Server) {
    server.on('connection', (socket: Socket) => {
      this.open.set(socket, 0);
      socket.once('close', () => this.open.delete(socket));
    });
    server.on('request', (req, res) => {
      const socket = req.socket;
      this.open.set(socket, (this.open.get(socket) ?? 0) + 1);
      res.once('close', () => {
        const n = this.open.get(socket);
        if (n !== undefined) this.open.set(socket, n - 1);
      });
    });
  }

  get size(): number {
    return this.open.size;
  }

  /** Destroys every connection with no request in progress; returns how many. */
  closeUnused(): number {
    let n = 0;
    for (const [socket, requests] of this.open) {
      if (requests === 0) {
        socket.destroy();
        n++;
      }
    }
    return n;
  }
}
