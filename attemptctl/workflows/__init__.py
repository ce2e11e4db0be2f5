"""One public entry per computing command, and what they share (load rows, backbone, mixture; train; register)."""
