"""The Faust shell: ``build_app`` wires topics, tables and timers to the stages.

Pure logic lives beside it in ``stream/`` (codec, steps, member, surge, rules, profiles); this
package only connects it to Faust. Importing it builds nothing.
"""
