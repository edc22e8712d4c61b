"""Retention on files: sign-up and registration exports in drop folders, proxy logs.

Some of a library's systems only hand over files. The same promise holds for
them as for the databases — de-identified facts first, then nothing past its
window still identifies anyone, proven by a verification pass and told in
audit rows of counts — but the unit of change is a line of a file, and a file
can only be changed by writing it anew. So:

* every file is read and checked in a stream before anything acts on it; a
  file (or a line) that cannot be read is reported with its name and line
  number and is never the reason anything is deleted;
* a file changes only by an atomic rewrite (``files.atomic``): the new
  content is written beside it, flushed to disk, renamed over it, and the
  directory flushed, so a crash leaves the old file or the new one;
* the outcome of every category is an ``engine.CategoryResult``, written with
  ``warehouse.write_audit`` like every other source's.

``files.runner`` runs a file source end to end (``run_folder``, ``run_squid``);
``sources.dropfolder`` and ``sources.squid`` know the formats.
"""
