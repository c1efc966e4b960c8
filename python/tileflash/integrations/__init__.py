"""Integrations with other libraries; each is imported on demand."""
