"""The domain: runs, their derived state, and live fan-out. No gRPC here."""
