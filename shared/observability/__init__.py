"""What ops teams see of a running service: metrics, traces and structured logs."""
