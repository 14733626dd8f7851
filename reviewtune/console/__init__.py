"""Read-side of the ``reviewtune`` command: where the stack is (AWS or the local runtime), queries, rendering."""
