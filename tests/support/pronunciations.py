"""Thirty common IPA pronunciations a voice agent is asked for: drugs, names, places.

Each is (word, IPA as a dictionary or a developer writes it, the Arpabet expected, or None
where Arpabet has no symbol for one of its phones and the word is better said as written).
"""

# ruff: noqa: RUF001  (IPA is written in IPA letters)

from __future__ import annotations

COMMON: list[tuple[str, str, str | None]] = [
    # Drugs
    ("Metformin", "mɛtˈfɔɹmɪn", "M EH0 T F AO1 R M IH0 N"),
    ("Ibuprofen", "ˌaɪbjuˈpɹoʊfən", "AY2 B Y UW0 P R OW1 F AH0 N"),
    ("Acetaminophen", "əˌsiːtəˈmɪnəfən", "AH0 S IY2 T AH0 M IH1 N AH0 F AH0 N"),
    ("Lisinopril", "laɪˈsɪnəpɹɪl", "L AY0 S IH1 N AH0 P R IH0 L"),
    ("Atorvastatin", "əˌtɔɹvəˈstætɪn", "AH0 T AO2 R V AH0 S T AE1 T IH0 N"),
    ("Amoxicillin", "əˌmɑksəˈsɪlɪn", "AH0 M AA2 K S AH0 S IH1 L IH0 N"),
    ("Omeprazole", "oʊˈmɛpɹəzoʊl", "OW0 M EH1 P R AH0 Z OW0 L"),
    ("Levothyroxine", "ˌliːvoʊθaɪˈɹɑksiːn", "L IY2 V OW0 TH AY0 R AA1 K S IY0 N"),
    ("Gabapentin", "ˌɡæbəˈpɛntɪn", "G AE2 B AH0 P EH1 N T IH0 N"),
    ("Sertraline", "ˈsɝtɹəliːn", "S ER1 T R AH0 L IY0 N"),
    # Names
    ("Siobhan", "ʃɪˈvɔːn", "SH IH0 V AO1 N"),
    ("Niamh", "niːv", "N IY1 V"),
    ("Saoirse", "ˈsɪɹʃə", "S IH1 R SH AH0"),
    ("Nguyen", "ŋwɪn", "NG W IH1 N"),
    ("Joaquin", "wɑˈkiːn", "W AA0 K IY1 N"),
    ("Xavier", "ˈzeɪviɚ", "Z EY1 V IY0 ER0"),
    ("Hermione", "hɝˈmaɪəni", "HH ER0 M AY1 AH0 N IY0"),
    ("Aoife", "ˈiːfə", "IY1 F AH0"),
    ("Dvořák", "ˈdvɔɹʒɑːk", "D V AO1 R ZH AA0 K"),
    ("Przybylski", "pʃəˈbɪlski", "P SH AH0 B IH1 L S K IY0"),
    ("Jean", "ʒɑ̃", None),  # French nasal vowel
    ("Bach", "bɑːx", None),  # German ach-sound
    # Places
    ("Worcester", "ˈwʊstɚ", "W UH1 S T ER0"),
    ("Edinburgh", "ˈɛdɪnbəɹə", "EH1 D IH0 N B AH0 R AH0"),
    ("Houston", "ˈhjuːstən", "HH Y UW1 S T AH0 N"),
    ("Versailles", "vɛɹˈsaɪ", "V EH0 R S AY1"),
    ("Reykjavík", "ˈɹeɪkjəvɪk", "R EY1 K Y AH0 V IH0 K"),
    ("Nevada", "nəˈvædə", "N AH0 V AE1 D AH0"),
    ("Zürich", "ˈtsyːʁɪç", None),  # front rounded vowel, uvular r, ich-sound
    ("Llanelli", "ɬaˈnɛɬi", None),  # Welsh ll
]
