"""kcont-vm: build the kcont kernel series and run the suite under QEMU.

Every module that runs before the project's venv exists (``install``,
``paths``, ``errors``, ``cli``) uses the standard library only, so
``PYTHONPATH=vm /usr/bin/python3 -m kcont_vm setup`` can bootstrap a bare
Debian 12 machine.
"""
