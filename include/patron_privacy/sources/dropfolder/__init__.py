"""CSV exports in drop folders: PC sign-ups and program registrations.

Many sign-up and event systems only export files. A library points a folder
source at the folder its system exports into and maps the columns
(``sources.<name>.folders`` in the policy). ``kinds`` says what each kind of
export holds, ``csvfiles`` reads and checks a file line by line, and
``signups`` / ``programs`` are the two sources.
"""
