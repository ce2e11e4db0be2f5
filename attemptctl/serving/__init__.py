"""``attemptctl serve``: every registered prompt behind one frozen backbone, over HTTP.

One process loads the LM once; requests for different prompts that arrive together run in one forward
pass, each row with its own prompt (the mixed-task batch path training and ``eval`` already use). A
prompt that does not depend on the input (prompt tuning, SPoT, a source, constant attention) has its
keys and values computed once and reused (prefix caching, decoder-only LMs); an ATTEMPT prompt is made
per input.

- :mod:`~attemptctl.serving.inputs`: what a request may carry, checked before anything runs;
- :mod:`~attemptctl.serving.prompts`: the servable prompts (a read-only view of the registry), loaded on
  first use;
- :mod:`~attemptctl.serving.batch`: one mixed batch through the LM;
- :mod:`~attemptctl.serving.batcher`: dynamic batching (``--max-batch``, ``--max-wait-ms``);
- :mod:`~attemptctl.serving.service`: what the HTTP layer calls (tests drive it directly);
- :mod:`~attemptctl.serving.api`: the FastAPI app; :mod:`~attemptctl.serving.server`: ``serve`` itself.

FastAPI and uvicorn come with the ``serve`` extra; only ``api`` and ``server`` import them.
"""
