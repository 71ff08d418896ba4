// ws_client.js - a cohort.v1 client on Node's `ws` package, an implementation
// of RFC 6455 written by nobody here, for test_bus_rfc.py.
//
//   node ws_client.js URL [HELLO_JSON]
//
// URL is ws://HOST:PORT/ or ws+unix:///PATH/bus.sock:/ .  After the upgrade
// it sends HELLO_JSON (when given) and then runs the commands it reads on
// stdin, one JSON object a line:
//   {"send": TEXT}                       a text message
//   {"send_hex": HEX, "binary": B, "fin": F}   raw bytes as a text (or binary)
//                                        frame; fin false starts or continues
//                                        a fragmented message
//   {"repeat": N, "send_hex": ...}       the same frame N times
//   {"pause": true} / {"resume": true}   stop / start reading the socket
// Everything it sees goes to stdout, one JSON object a line:
//   {"event":"open"} {"event":"message","data":TEXT} {"event":"done","n":K}
//   {"event":"close","code":C,"reason":R} {"event":"error","error":MSG}
// It exits once the connection is closed.
'use strict';

const readline = require('readline');
const WebSocket = require(process.env.WS_MODULE || 'ws');

const [url, hello] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
const ws = new WebSocket(url, 'cohort.v1', { perMessageDeflate: false, maxPayload: 64 << 20 });

ws.on('open', () => {
	out({ event: 'open' });
	if (hello)
		ws.send(hello);
	const rl = readline.createInterface({ input: process.stdin });
	rl.on('line', (line) => {
		if (!line.trim())
			return;
		const cmd = JSON.parse(line);
		let n = 0;
		if (cmd.pause)
			ws.pause();
		else if (cmd.resume)
			ws.resume();
		else if (cmd.send !== undefined)
			ws.send(cmd.send), n = 1;
		else if (cmd.send_hex !== undefined)
			for (; n < (cmd.repeat || 1); n++)
				ws.send(Buffer.from(cmd.send_hex, 'hex'),
					{ binary: !!cmd.binary, fin: cmd.fin !== false });
		out({ event: 'done', n });
	});
});
ws.on('message', (data, isBinary) => out({ event: 'message', binary: isBinary, data: data.toString() }));
ws.on('close', (code, reason) => {
	// exit once stdout has taken every line (a pipe is written asynchronously)
	process.stdout.write(JSON.stringify({ event: 'close', code, reason: reason.toString() }) + '\n',
		() => process.exit(0));
});
ws.on('error', (err) => out({ event: 'error', error: String(err.message || err) }));
