"""The decision core: pure functions, no Faust, no I/O. Easy to test, easy to replay."""
