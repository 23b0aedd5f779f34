"""Provider webhooks: verified at the door, kept in a durable inbox, turned into commands."""
