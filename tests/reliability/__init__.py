"""The fault-injection suite: what README's "What is guaranteed" promises, under attack.

- ``test_kill_resume``: ``kill -9`` in the middle of a prediction batch, then the same
  command: outputs complete, valid, and equal to an uninterrupted batch's;
- ``test_interrupt_train``: Ctrl-C in the middle of training, then the printed command:
  the same model, bit for bit, as an uninterrupted run (tiny preset);
- ``test_fuzz_geojson``: 400 malformed sidecars (``geojson_fuzz``), each read or refused
  with one ``Error:`` line and exit 2 through the CLI, never a traceback;
- ``test_hostile_models``: model files that would run code, damaged or forged ones;
- ``test_hostile_paths``: spaces, non-ASCII and shell characters, folders named ``.svs``;
- ``test_user_files``: slides, sidecars, QuPath project and truth byte-identical after
  every command.
"""
