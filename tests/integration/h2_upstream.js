'use strict';
// An HTTP/2 origin (h2c, prior knowledge) for sidetrace's integration tests, on Node's built-in
// http2 module (an nghttp2 independent of the proxy's own use of it).
//   node h2_upstream.js [--max-concurrent-streams N]
// Listens on 127.0.0.1:0 and prints "PORT <n>". Exits when stdin closes (the test process died).
// Paths (a leading /h2 is ignored, so a proxy can route to this peer by that prefix):
//   /stats            counters as "name value" lines (sessions that only asked /stats not counted)
//   /echo...          200; body = request body; request headers echoed as x-echo-<name> (pseudo
//                     headers as x-echo-method / -path / -authority / -scheme), their names in
//                     order in x-echo-header-names; request trailers echoed as response trailers
//                     named x-echo-<name>
//   /status/<code>    that status, body "status <code>"
//   /trailers         200, body "with trailers", trailers x-trailer: done, x-checksum: 42
//   /stall/<ms>       200 "stalled" after <ms> (unless the stream is reset first)
//   /gate/<n>         held until n requests wait at /gate/<n> at once, then all get 200 "gate":
//                     proves n requests were in flight together, whatever the timing
//   /reset            RST_STREAM INTERNAL_ERROR before any response
//   /reset-mid        response headers and 1 KiB of body, then RST_STREAM INTERNAL_ERROR
//   /large/<n>        200 with n bytes, byte i = (i*131 + floor(i/251)) & 0xff, streamed
//   /big-headers/<n>  200 whose head carries about n bytes of fields (x-big, 1000 bytes, repeated)
//   /big-trailers/<n> 200, body "big trailers", then about n bytes of trailer fields (as above)
//   anything else     404

const http2 = require('http2');

const args = process.argv.slice(2);
const settings = {};
const mcs = args.indexOf('--max-concurrent-streams');
if (mcs >= 0) {
  settings.maxConcurrentStreams = Number(args[mcs + 1]);
}

const stats = {
  connections: 0,      // sessions that carried at least one request other than /stats
  streams: 0,          // requests other than /stats
  open_streams: 0,
  max_open_streams: 0, // highest number of such requests in flight at once, over all sessions
  peer_resets: 0,      // streams the peer (the proxy) reset before we ended them
  goaways: 0,          // GOAWAYs sent (/goaway)
};

const gates = new Map(); // n → streams waiting at /gate/<n>

function patternByte(i) {
  return (i * 131 + Math.floor(i / 251)) & 0xff;
}

function sendLarge(stream, total) {
  stream.respond({ ':status': 200, 'content-type': 'application/octet-stream' });
  let sent = 0;
  const write = () => {
    while (sent < total) {
      const n = Math.min(16384, total - sent);
      const chunk = Buffer.allocUnsafe(n);
      for (let j = 0; j < n; j++) {
        chunk[j] = patternByte(sent + j);
      }
      sent += n;
      if (!stream.write(chunk)) {
        stream.once('drain', write);
        return;
      }
    }
    stream.end();
  };
  write();
}

function echo(stream, headers, body, trailers) {
  const out = { ':status': 200 };
  const names = [];
  for (const name of Object.keys(headers)) {
    names.push(name);
    const value = headers[name];
    const echoed = name.startsWith(':') ? 'x-echo-' + name.slice(1) : 'x-echo-' + name;
    out[echoed] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  out['x-echo-header-names'] = names.join(',');
  const trailerNames = Object.keys(trailers || {}).filter((n) => !n.startsWith(':'));
  stream.respond(out, { waitForTrailers: trailerNames.length > 0 });
  if (trailerNames.length > 0) {
    stream.on('wantTrailers', () => {
      const t = {};
      for (const n of trailerNames) {
        t['x-echo-' + n] = String(trailers[n]);
      }
      stream.sendTrailers(t);
    });
  }
  stream.end(body);
}

// About n bytes of fields (RFC 9113 §6.5.2's size: name + value + 32 each): "x-big" with one
// 1000-byte value, repeated. HPACK sends the repeats as one-byte references, so a block far over
// 1 MiB fits the 147 KiB of frames nghttp2 accepts (HEADERS + 8 CONTINUATIONs).
function bigFields(n) {
  const value = 'v'.repeat(1000);
  const values = [];
  for (let size = 0; size < n; size += 'x-big'.length + value.length + 32) {
    values.push(value);
  }
  return { 'x-big': values };
}

// RST_STREAM INTERNAL_ERROR now. (stream.close() would first end the stream cleanly when
// response headers were sent; destroy with an error resets it as it is.)
function resetNow(stream) {
  stream.resetByUs = true;
  stream.destroy(new Error('reset by the test origin'));
}

function handle(stream, headers, body, trailers) {
  const path = headers[':path'].split('?')[0].replace(/^\/h2(?=\/)/, '');
  let m;
  if (path.startsWith('/echo')) {
    echo(stream, headers, body, trailers);
  } else if ((m = path.match(/^\/status\/(\d+)$/))) {
    stream.respond({ ':status': Number(m[1]) });
    stream.end('status ' + m[1]);
  } else if (path === '/trailers') {
    stream.respond({ ':status': 200 }, { waitForTrailers: true });
    stream.on('wantTrailers', () => {
      stream.sendTrailers({ 'x-trailer': 'done', 'x-checksum': '42' });
    });
    stream.end('with trailers');
  } else if ((m = path.match(/^\/stall\/(\d+)$/))) {
    setTimeout(() => {
      if (!stream.destroyed && !stream.closed) {
        stream.respond({ ':status': 200 });
        stream.end('stalled');
      }
    }, Number(m[1]));
  } else if ((m = path.match(/^\/gate\/(\d+)$/))) {
    const n = Number(m[1]);
    const waiting = gates.get(n) || [];
    gates.set(n, waiting);
    waiting.push(stream);
    stream.on('close', () => {
      const i = waiting.indexOf(stream);
      if (i >= 0) {
        waiting.splice(i, 1);
      }
    });
    if (waiting.length >= n) {
      gates.delete(n);
      for (const s of waiting.splice(0)) {
        s.respond({ ':status': 200 });
        s.end('gate');
      }
    }
  } else if (path === '/goaway') {
    // A graceful GOAWAY that still covers this stream (a server restarting): answer it, then
    // refuse anything newer on this connection.
    stream.session.goaway(http2.constants.NGHTTP2_NO_ERROR, stream.id);
    stats.goaways++;
    stream.respond({ ':status': 200 });
    stream.end('bye');
  } else if (path === '/reset') {
    resetNow(stream);
  } else if (path === '/reset-mid') {
    stream.respond({ ':status': 200 });
    stream.write(Buffer.alloc(1024, 'r'), () => resetNow(stream));
  } else if ((m = path.match(/^\/large\/(\d+)$/))) {
    sendLarge(stream, Number(m[1]));
  } else if ((m = path.match(/^\/big-headers\/(\d+)$/))) {
    stream.respond({ ':status': 200, ...bigFields(Number(m[1])) });
    stream.end('big headers');
  } else if ((m = path.match(/^\/big-trailers\/(\d+)$/))) {
    stream.respond({ ':status': 200 }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers(bigFields(Number(m[1]))));
    stream.end('big trailers');
  } else {
    stream.respond({ ':status': 404 });
    stream.end('no such path');
  }
}

function statsText() {
  return Object.entries(stats).map(([k, v]) => `${k} ${v}\n`).join('');
}

// Header blocks over 64 KiB (Node's default limit, counted before HPACK) may be sent, for the
// proxy's limits.
const server = http2.createServer({ settings, maxSendHeaderBlockLength: 4 << 20 });

server.on('stream', (stream, headers) => {
  stream.on('error', () => {}); // resets and aborted sessions are expected here
  if (headers[':path'] === '/stats') {
    stream.respond({ ':status': 200, 'content-type': 'text/plain' });
    stream.end(statsText());
    return;
  }
  const session = stream.session;
  if (!session.counted) {
    session.counted = true;
    stats.connections++;
  }
  stats.streams++;
  stats.open_streams++;
  stats.max_open_streams = Math.max(stats.max_open_streams, stats.open_streams);
  stream.on('close', () => {
    stats.open_streams--;
    if (stream.rstCode && !stream.resetByUs) {
      stats.peer_resets++;
    }
  });
  const chunks = [];
  let trailers = null;
  stream.on('trailers', (t) => { trailers = t; });
  stream.on('data', (c) => chunks.push(c));
  stream.on('end', () => {
    if (!stream.destroyed) {
      handle(stream, headers, Buffer.concat(chunks), trailers);
    }
  });
});
server.on('sessionError', () => {});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${server.address().port}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();
