"""Statistical releases the statute allows: counts that identify no one, with a proof.

``publish.publish`` makes the monthly and annual releases: ``build`` counts,
protects and renders one into a staging folder, and ``publish`` scans it and
swaps it into place (``folder``). ``tables`` says what they count (in the
warehouse), ``sdc`` protects and audits them, ``dp`` is the differentially
private alternative, ``pii_gate`` scans every output before it is published,
``report`` draws the HTML and PDF, ``config`` reads
``include/config/disclosure.yaml``.
"""
