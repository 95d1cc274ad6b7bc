"""Every patch of mitmproxy's internals, in one place (the seam).

Nothing outside this package reaches into mitmproxy's private names.
"""
