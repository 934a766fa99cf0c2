"""What the API, the console and the `smsgw` command do alike, whichever of them asks.

Route modules read the request and shape the response; the work between is here, so
the three front doors cannot drift apart.
"""
