"""smsgw: an event-driven SMS gateway service."""
