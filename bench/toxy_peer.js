// toxy (Node.js chaos proxy) as a reverse proxy for the benchmark's peers table.
// usage: node toxy_peer.js UPSTREAM_URL PORT DELAY_MS
// toxy is installed from npm into a cache directory (NODE_PATH), never into the repository.
const toxy = require('toxy')

const [upstream, port, delay] = process.argv.slice(2)
const proxy = toxy()
proxy.forward(upstream)
if (Number(delay) > 0) {
  // A number is an exact delay in ms (toxy calls it "jitter").
  proxy.poison(toxy.poisons.latency(Number(delay)))
} else {
  // Passthrough: toxy answers empty replies to requests no poison runs on, so a poison
  // that only hands the request on (on the next turn of the loop) stands in for none.
  proxy.poison(function passthrough (req, res, next) { setImmediate(next) })
}
proxy.all('/*')
proxy.listen(Number(port), '127.0.0.1')
