"""bcc tools for the kcont kernel series, one file per tool (BPF C next to
its Python), in the style of bcc's own: ``kcont-upcallsnoop``."""
