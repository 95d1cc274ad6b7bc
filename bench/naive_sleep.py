"""The naive way to add latency in mitmproxy, for comparison: sleep 100 ms in the hook."""

import asyncio


class NaiveSleep:
    async def request(self, flow: object) -> None:
        await asyncio.sleep(0.1)


addons = [NaiveSleep()]
