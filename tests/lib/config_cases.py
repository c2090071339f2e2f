"""Config texts shared by the unit config tests and the end-to-end user-error tests: a key,
a recipient, a local target, and the encryption precedence cases."""

from __future__ import annotations

import base64

KEY = base64.b64encode(bytes(range(32))).decode()
RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
LOCAL = '[backup.targets.l]\npath = "/x"\n'

#: ([backup] lines, job lines) -> the effective encryption, or the key named in the refusal
PRECEDENCE: dict[str, tuple[str, str, str]] = {
    "job aes beats [backup] encrypt=false": (
        f'encrypt = false\nencryption_key = "{KEY}"', 'encryption = "aes-256-gcm"', "aes-256-gcm"),
    "job encrypt=true beats [backup] encryption=none": (
        f'encryption = "none"\nrecipients = ["{RECIPIENT}"]', "encrypt = true", "age"),
    "job age beats [backup] aes": (
        f'encryption = "aes-256-gcm"\nencryption_key = "{KEY}"\nrecipients = ["{RECIPIENT}"]',
        'encryption = "age"', "age"),
    "job none beats [backup] age": (f'recipients = ["{RECIPIENT}"]', 'encryption = "none"',
                                    "none"),
    "job encrypt=false beats [backup] encrypt=true": (
        f'encrypt = true\nrecipients = ["{RECIPIENT}"]', "encrypt = false", "none"),
    "[backup] aes applies": (f'encryption = "aes-256-gcm"\nencryption_key = "{KEY}"', "",
                             "aes-256-gcm"),
    "inferred age": (f'recipients = ["{RECIPIENT}"]', "", "age"),
    "inferred aes": (f'encryption_key = "{KEY}"', "", "aes-256-gcm"),
    "encrypt=true and encryption=age agree": (
        f'recipients = ["{RECIPIENT}"]', 'encrypt = true\nencryption = "age"', "age"),
    # refused at load, naming the key
    "contradiction in the job": (f'recipients = ["{RECIPIENT}"]',
                                 'encrypt = false\nencryption = "age"', "!backup.jobs[0].encrypt"),
    "contradiction in [backup]": (f'encrypt = true\nencryption = "none"\nrecipients = '
                                  f'["{RECIPIENT}"]', "", "!backup.encrypt"),
    "contradiction none vs encrypt=true in job": (
        f'recipients = ["{RECIPIENT}"]', 'encrypt = true\nencryption = "none"',
        "!backup.jobs[0].encrypt"),
    "aes without key": ("", 'encryption = "aes-256-gcm"', "!backup.jobs[0].encryption_key"),
    "age without recipients": (f'encryption_key = "{KEY}"', 'encryption = "age"',
                               "!backup.jobs[0].recipients"),
    "[backup] aes without key": ('encryption = "aes-256-gcm"', "",
                                 "!backup.jobs[0].encryption_key"),
    "job encrypt=true after [backup] none, no key material": (
        'encryption = "none"', "encrypt = true", "!backup.jobs[0].encrypt"),
    "job recipients under [backup] encrypt=false": (
        "encrypt = false", f'recipients = ["{RECIPIENT}"]', "!backup.jobs[0].recipients"),
    "unknown cipher": ("", 'encryption = "rot13"', "!backup.jobs[0].encryption"),
    "unknown cipher in [backup]": ('encryption = "chacha"', "", "!backup.encryption"),
    "encrypt not a bool": (f'recipients = ["{RECIPIENT}"]', 'encrypt = "no"',
                           "!backup.jobs[0].encrypt"),
}


def precedence_config(backup: str, job: str, name: str = "j") -> str:
    return f'[backup]\n{backup}\n{LOCAL}[[backup.jobs]]\nname = "{name}"\ndatabase = "d"\n{job}\n'
