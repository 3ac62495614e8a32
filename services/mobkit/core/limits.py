"""Sizes every MobKit process agrees on."""

MAX_MESSAGE_BYTES = 80 * 1024 * 1024
"""gRPC messages in and out, servers and in-suite channels alike: a 64 MiB snapshot (the
default snapshot limit) with room to spare."""

MESSAGE_SIZE_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)
"""gRPC channel/server options for :data:`MAX_MESSAGE_BYTES`."""
