"""Customer notifications: rendered from templates, delivered by webhook or SMTP."""
